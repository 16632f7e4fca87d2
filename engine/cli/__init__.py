"""The ``stationflow`` command line: one module per command group."""
