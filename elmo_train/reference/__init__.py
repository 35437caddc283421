"""Independent re-implementations and workloads that check ours: parity tests and benchmarks."""
