#!/usr/bin/env python3
"""provider-fallback command line: ``serve`` (the default), ``check``, ``status``, ``events export``,
``replay``, and ``demo`` (from ``examples/``). See ``python run.py --help``."""

from __future__ import annotations

import sys

from actors.cli import main
from examples.demo import DEMO

if __name__ == "__main__":
    sys.exit(main(extra={"demo": DEMO}))
