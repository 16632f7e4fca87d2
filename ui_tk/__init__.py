"""The Tk configurator (``stationflow configure``).

Imports ``schemas`` and the engine's client-side pieces (config file, control client, connection
test, the offline view of the spool); never the spool itself. Start at ``app.py``.
"""
