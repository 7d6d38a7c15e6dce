"""Sign and verify cost of every SM2 backend against Ed25519 (`cryptography`, the baseline).

    python scripts/bench/crypto_sign_verify.py [--seconds 1.0] [--max-ops 20000] [--size 4096]

Each measurement runs until it has used --seconds of wall time or done --max-ops operations,
whichever comes first, after a short warm-up (which also builds the lazily computed tables).
Ratios are against Ed25519 in the same run, which is steadier than absolute figures across machines.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from gascore.crypto import SM2_BACKEND, SM2_BACKENDS, Ed25519Signer, Sm2Signer, Sm2Verifier


@dataclass(frozen=True)
class Result:
    name: str
    sign_ms: float
    verify_ms: float
    sign_ops: int
    verify_ops: int


def measure(op: Callable[[], object], seconds: float, max_ops: int) -> tuple[float, int]:
    """Mean milliseconds per call, and the number of calls timed."""
    for _ in range(3):
        op()
    done = 0
    start = time.perf_counter()
    deadline = start + seconds
    while done < max_ops:
        op()
        done += 1
        # Reading the clock every call is cheap next to a signature (>= ~50 µs).
        if time.perf_counter() >= deadline:
            break
    return (time.perf_counter() - start) * 1e3 / done, done


def bench_sm2(backend: str, message: bytes, seconds: float, max_ops: int) -> Result:
    signer = Sm2Signer.generate(backend=backend)
    verifier = Sm2Verifier(signer.public_key_bytes(), backend=backend)
    signature = signer.sign(message)
    sign_ms, sign_ops = measure(lambda: signer.sign(message), seconds, max_ops)
    verify_ms, verify_ops = measure(lambda: verifier.verify(message, signature), seconds, max_ops)
    return Result(f"sm2-sm3/{backend}", sign_ms, verify_ms, sign_ops, verify_ops)


def bench_ed25519(message: bytes, seconds: float, max_ops: int) -> Result:
    signer = Ed25519Signer.generate()
    verifier = signer.verifier()
    signature = signer.sign(message)
    sign_ms, sign_ops = measure(lambda: signer.sign(message), seconds, max_ops)
    verify_ms, verify_ops = measure(lambda: verifier.verify(message, signature), seconds, max_ops)
    return Result("ed25519/cryptography", sign_ms, verify_ms, sign_ops, verify_ops)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=1.0, help="time budget per measurement")
    parser.add_argument("--max-ops", type=int, default=20_000, help="operation cap per measurement")
    parser.add_argument("--size", type=int, default=4096, help="message size in bytes (a batch)")
    parser.add_argument("--backend", action="append", choices=SM2_BACKENDS, help="SM2 backend(s)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()

    message = os.urandom(args.size)
    baseline = bench_ed25519(message, args.seconds, args.max_ops)
    results = [bench_sm2(b, message, args.seconds, args.max_ops) for b in args.backend or SM2_BACKENDS]
    results.append(baseline)

    if args.json:
        print(json.dumps({"default_sm2_backend": SM2_BACKEND, "results": [asdict(r) for r in results]}))
        return
    print(
        f"{platform.python_implementation()} {platform.python_version()} on {platform.machine()}, "
        f"message {args.size} B, default SM2 backend: {SM2_BACKEND}"
    )
    header = f"{'algorithm/backend':<22} {'sign ms':>9} {'sign/s':>9} {'verify ms':>10} {'verify/s':>9}"
    print(header + f" {'sign ×Ed':>9} {'verify ×Ed':>10}")
    for r in results:
        print(
            f"{r.name:<22} {r.sign_ms:9.3f} {1e3 / r.sign_ms:9.0f}"
            f" {r.verify_ms:10.3f} {1e3 / r.verify_ms:9.0f}"
            f" {r.sign_ms / baseline.sign_ms:9.1f} {r.verify_ms / baseline.verify_ms:10.1f}"
        )


if __name__ == "__main__":
    main()
