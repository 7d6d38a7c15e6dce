"""Interlocks: local control that does not wait for the cloud (A-4.1.5-edge, A-4.1.4-act)."""
