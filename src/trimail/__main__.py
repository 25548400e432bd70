"""``python -m trimail``."""

import sys

from .cli import main

sys.exit(main())
