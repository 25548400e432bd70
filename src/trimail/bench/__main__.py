"""``python -m trimail.bench ARGS``: ``trimail bench ARGS`` (worker processes start this way)."""

import sys

from .cli import main

sys.exit(main())
