"""The optional C modules in tests: each is tested beside its Python twin wherever it was built,
and must have been built wherever a C compiler is (its build is optional, so a broken one would
otherwise pass unseen as the Python version)."""

from __future__ import annotations

import shutil
import sysconfig

import pytest

NOT_BUILT = "trimail was installed without this C module"


def require_built(built: bool) -> None:
    """Fail unless the module was built; skip on a machine without the compiler to build it."""
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        pytest.skip(f"no C compiler ({compiler}): the Python version is the expected one")
    assert built, "pip had a C compiler but did not build the module: see its build log"
