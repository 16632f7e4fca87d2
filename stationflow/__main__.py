"""``python -m stationflow``: the same command line as the ``stationflow`` script."""

import sys

from .engine.cli.main import main

sys.exit(main())
