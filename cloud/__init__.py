"""The gasiot cloud: ingest of signed batches, registry, query API."""
