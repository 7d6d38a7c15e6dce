"""Southbound protocol drivers.  A driver knows the wire and nothing about rules, storage or the
cloud.  Every driver implements :class:`drivers.base.Driver`; the registry in
:mod:`drivers.registry` is the one place drivers are plugged in."""
