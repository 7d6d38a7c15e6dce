"""Exception types of gascore.crypto; callers catch CryptoError for any failure of this package."""


class CryptoError(Exception):
    """Base class for every error raised by gascore.crypto."""


class BadSignature(CryptoError):
    """A signature did not verify, whatever the reason (length, range of r/s, mismatch)."""


class KeyFileError(CryptoError):
    """A key file could not be written or read, or has unsafe permissions."""
