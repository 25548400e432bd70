"""Everything about the package is in pyproject.toml; this only adds the optional C modules.

``optional=True``: without a C compiler (or Python's headers) the build goes on without it and
trimail uses the pure-Python versions of the same functions.
"""

import sys

from setuptools import Extension, setup

# -O3 lets GCC and Clang vectorize the per-byte loop (at -O2 GCC 12 leaves it scalar, ~20x
# slower); MSVC takes other flags, and its default is fine for an optional speed-up.
flags = [] if sys.platform == "win32" else ["-O3"]


def optional_module(name: str) -> Extension:
    source = "src/" + name.replace(".", "/") + ".c"
    return Extension(name, [source], optional=True, extra_compile_args=flags)


setup(
    ext_modules=[
        optional_module("trimail.protocol._speedups"),  # the DATA decoder's bare-newline check
        optional_module("trimail.delivery._maildir_batch"),  # the Maildir's batch, GIL-free
    ]
)
