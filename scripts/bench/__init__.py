"""Benchmarks: `python -m scripts.bench all [--quick]` runs every scenario; see docs/performance.md."""
