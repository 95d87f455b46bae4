"""Benchmarks: each prints its figures, the last line as JSON."""
