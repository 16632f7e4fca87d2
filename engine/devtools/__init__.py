"""Tools for developers and demos: the WATS emulator, the demo, sample reports, benchmarks."""
