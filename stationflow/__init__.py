"""stationflow: the station client for WATS — test results converted, spooled durably, uploaded.

The code lives in sub-packages installed under this one name (``stationflow.engine``,
``stationflow.schemas``, ``stationflow.machines``, ``stationflow.ui_tk``), so nothing of ours
shadows, or is shadowed by, another distribution's top-level package.
"""

__version__ = "0.2.0"
