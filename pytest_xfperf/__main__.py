"""``python -m pytest_xfperf``: see pytest_xfperf/cli.py."""

import os
import sys

from pytest_xfperf.cli import main

try:
    code = main()
    sys.stdout.flush()
except BrokenPipeError:
    # The reader went away (`... | head`): stop quietly, as a shell tool killed by SIGPIPE
    # does, and keep Python from writing a second error when it flushes stdout at exit.
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    code = 128 + 13
sys.exit(code)
