"""`python -m plugins.vpp.simulator`: serve a simulator (see cli.py)."""

import sys

from .cli import main

sys.exit(main())
