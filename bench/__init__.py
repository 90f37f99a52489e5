"""Benchmarks: one module per benchmark (bench_*.py), each with a `main()`; `bench/run` runs them."""
