from northbound_kit import running

__all__ = ["running"]
