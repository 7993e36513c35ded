"""``python -m pytest_xfperf``: see pytest_xfperf/cli.py."""

import sys

from pytest_xfperf.cli import main

sys.exit(main())
