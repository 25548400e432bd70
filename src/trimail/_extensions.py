"""The switch for trimail's optional C modules.

pip builds them where a C compiler is (setup.py), and each has a Python twin that gives the same
answers: ``protocol/_speedups.c`` (the DATA decoder's bare-newline check) and
``delivery/_maildir_batch.c`` (a Maildir batch without the GIL). ``TRIMAIL_NO_EXTENSIONS=1``
(any value but empty or 0) makes trimail use the Python versions even where the C ones were
built, as ``AIOHTTP_NO_EXTENSIONS`` does for aiohttp: to measure one against the other, or to
rule the C out while hunting a bug. It is read once, when trimail is imported.
"""

from __future__ import annotations

import os

#: Whether the modules that have a C version may use it.
ENABLED = os.environ.get("TRIMAIL_NO_EXTENSIONS", "") in {"", "0"}
