"""Creating signers and verifiers by algorithm name, and storing signing keys in files.

A key file is JSON {"alg", "private_key", "public_key", "key_id"} (hex), mode 0600.  It is written
to a temporary name and moved into place, so a crash leaves either no key or a whole key, never a
truncated one that a restarted gateway would refuse (or worse, regenerate over).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import stat
from pathlib import Path
from typing import Any

from gascore.crypto.base import SIG_ALGS, SigAlg, Signer, Verifier, key_id_of
from gascore.crypto.errors import CryptoError, KeyFileError
from gascore.crypto.sm2 import Sm2Signer, Sm2Verifier

KEY_FILE_MODE = 0o600
_MAX_KEY_FILE_BYTES = 64 * 1024


def _check_alg(alg: str) -> SigAlg:
    for known in SIG_ALGS:
        if alg == known:
            return known
    raise CryptoError(f"unknown signature algorithm {alg!r} (expected one of {', '.join(SIG_ALGS)})")


def generate_signer(alg: SigAlg = "sm2-sm3") -> Signer:
    if _check_alg(alg) == "sm2-sm3":
        return Sm2Signer.generate()
    from gascore.crypto.ed25519 import Ed25519Signer  # needs `cryptography`: only when chosen

    return Ed25519Signer.generate()


def signer_from_private_bytes(alg: SigAlg, private_key: bytes) -> Signer:
    if _check_alg(alg) == "sm2-sm3":
        return Sm2Signer.from_private_bytes(private_key)
    from gascore.crypto.ed25519 import Ed25519Signer

    return Ed25519Signer.from_private_bytes(private_key)


def verifier_for(alg: SigAlg, public_key: bytes) -> Verifier:
    """Raises CryptoError for a malformed key or one that is not a valid curve point."""
    if _check_alg(alg) == "sm2-sm3":
        return Sm2Verifier(public_key)
    from gascore.crypto.ed25519 import Ed25519Verifier

    return Ed25519Verifier(public_key)


def _private_key_bytes(signer: Signer) -> bytes:
    # The Signer protocol deliberately has no export method (a signer may live in an HSM);
    # only the in-process key types can be written out.
    if isinstance(signer, Sm2Signer):
        return signer.private_key_bytes()
    from gascore.crypto.ed25519 import Ed25519Signer

    if isinstance(signer, Ed25519Signer):
        return signer.private_key_bytes()
    raise CryptoError(f"{type(signer).__name__} cannot export its private key")


def write_key_file(signer: Signer, path: Path, *, overwrite: bool = False) -> None:
    """Store the signer's key at path with mode 0600, atomically; refuses an existing file unless
    overwrite is set (replacing a key orphans everything signed under the old one)."""
    path = Path(path)
    try:
        private = _private_key_bytes(signer)
    except CryptoError as exc:
        raise KeyFileError(f"cannot write key file {path}: {exc}") from exc
    public = signer.public_key_bytes()
    document = {
        "alg": signer.alg,
        "private_key": private.hex(),
        "public_key": public.hex(),
        "key_id": key_id_of(public),
    }
    payload = (json.dumps(document, indent=2) + "\n").encode()
    write_file_atomically(path, payload, mode=KEY_FILE_MODE, overwrite=overwrite, what="key file")


def write_file_atomically(path: Path, data: bytes, *, mode: int, overwrite: bool, what: str) -> None:
    """Write ``data`` to ``path`` with exactly ``mode``: a temporary file created with O_EXCL,
    fsynced, moved into place (refusing an existing file unless ``overwrite``), directory fsynced."""
    path = Path(path)
    if not overwrite and path.exists():
        raise KeyFileError(f"{what} {path} already exists; refusing to overwrite it")
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    except OSError as exc:
        raise KeyFileError(f"cannot create {what} {path}: {exc.strerror or exc}") from exc
    try:
        try:
            os.fchmod(fd, mode)  # the umask can only remove bits; make the mode exact
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        _move_into_place(tmp, path, overwrite=overwrite)
        _fsync_directory(path.parent)
    except OSError as exc:
        raise KeyFileError(f"cannot write {what} {path}: {exc.strerror or exc}") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _move_into_place(tmp: Path, path: Path, *, overwrite: bool) -> None:
    if overwrite:
        tmp.replace(path)
        return
    # A hard link fails if the target exists, closing the race between the exists() check and
    # the rename; the temporary name is unlinked by the caller afterwards.
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise KeyFileError(f"key file {path} already exists; refusing to overwrite it") from None
    except OSError:
        # Some filesystems (FAT on removable media, some FUSE mounts) have no hard links.
        if path.exists():
            raise KeyFileError(f"key file {path} already exists; refusing to overwrite it") from None
        tmp.replace(path)


def _fsync_directory(directory: Path) -> None:
    # Makes the new directory entry durable; not every platform or filesystem allows it.
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def load_key_file(path: Path) -> Signer:
    """Read a key written by write_key_file.  Refuses files readable by group or other, and files
    whose stored public key or key id do not match the private key (a hand-edited or mixed-up file)."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise KeyFileError(f"key file {path} does not exist") from None
    except OSError as exc:
        raise KeyFileError(f"cannot open key file {path}: {exc.strerror or exc}") from exc
    try:
        # fstat of the open descriptor: the file checked is the file read, even if path is swapped.
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise KeyFileError(f"key file {path} is not a regular file")
        if st.st_mode & 0o077:
            raise KeyFileError(
                f"key file {path} has mode {stat.S_IMODE(st.st_mode):04o}, readable or writable by "
                f"group/other; run: chmod 600 {path}"
            )
        raw = b""
        while len(raw) <= _MAX_KEY_FILE_BYTES:
            chunk = os.read(fd, _MAX_KEY_FILE_BYTES + 1 - len(raw))
            if not chunk:
                break
            raw += chunk
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {path}: {exc.strerror or exc}") from exc
    finally:
        os.close(fd)
    if len(raw) > _MAX_KEY_FILE_BYTES:
        raise KeyFileError(f"key file {path} is too large to be a key file")
    try:
        return _parse_key_document(json.loads(raw))
    except (ValueError, TypeError, CryptoError) as exc:
        # The messages below never quote key material, only which field is wrong.
        raise KeyFileError(f"key file {path} is malformed: {exc}") from None


def _parse_key_document(document: Any) -> Signer:
    if not isinstance(document, dict):
        raise TypeError("not a JSON object")
    fields = {}
    for name in ("alg", "private_key", "public_key", "key_id"):
        value = document.get(name)
        if not isinstance(value, str):
            raise TypeError(f"missing or non-string field {name!r}")
        fields[name] = value
    alg = _check_alg(fields["alg"])
    try:
        private = bytes.fromhex(fields["private_key"])
        public = bytes.fromhex(fields["public_key"])
    except ValueError:
        raise ValueError("private_key/public_key are not hex") from None
    signer = signer_from_private_bytes(alg, private)
    if signer.public_key_bytes() != public:
        raise ValueError("public_key does not belong to private_key")
    if signer.key_id != fields["key_id"]:
        raise ValueError("key_id does not match public_key")
    return signer
