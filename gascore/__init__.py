"""Shared contract between the gasiot edge and cloud: records, thing-model schema, the batch
wire format and the cryptographic primitives.  Edge and cloud both import this package and never
import each other."""
