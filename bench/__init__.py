"""Benchmarks and evaluations: figures, not assertions. Run from a checkout (`make bench`, `make eval`, ...);
this package is neither in the wheel nor in the image, and nothing served imports it."""
