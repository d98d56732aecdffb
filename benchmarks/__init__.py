"""Benchmarks that measure Darkroom's promise: push beats polling. Run with `make bench`."""
