"""Fixtures for the OPC-UA driver tests; the helpers live in opcua_kit (a unique module name, so
test modules never import a `conftest` that belongs to another folder)."""

from opcua_kit import gateway_cert, recorder, run_driver, sim

__all__ = ["gateway_cert", "recorder", "run_driver", "sim"]
