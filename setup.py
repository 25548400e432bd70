"""Everything about the package is in pyproject.toml; this only adds the optional C module.

``optional=True``: without a C compiler (or Python's headers) the build goes on without it and
trimail uses the pure-Python versions of the same functions.
"""

import sys

from setuptools import Extension, setup

# -O3 lets GCC and Clang vectorize the per-byte loop (at -O2 GCC 12 leaves it scalar, ~20x
# slower); MSVC takes other flags, and its default is fine for an optional speed-up.
flags = [] if sys.platform == "win32" else ["-O3"]

setup(
    ext_modules=[
        Extension(
            "trimail.protocol._speedups",
            ["src/trimail/protocol/_speedups.c"],
            optional=True,
            extra_compile_args=flags,
        )
    ]
)
