"""Load and speed benchmarks (`make bench`); they print figures and never assert timings."""
