"""Throughput benchmarks (run as modules; results are not committed)."""
