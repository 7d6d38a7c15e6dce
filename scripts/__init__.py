"""Developer scripts (benchmarks, chaos runs): importable so that `python -m scripts.bench` works."""
