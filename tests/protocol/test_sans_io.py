"""The core is sans-I/O: importing any of its modules must not pull in trio or a socket."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import trimail.protocol

MODULES = sorted(
    f"trimail.protocol.{info.name}" for info in pkgutil.iter_modules(trimail.protocol.__path__)
)

FORBIDDEN = ("trio", "socket", "ssl", "selectors", "asyncio")

CHECK = """
import sys
{imports}
loaded = sorted(
    name for name in sys.modules if name.split(".")[0] in {forbidden!r}
)
assert not loaded, loaded
print("ok", len({modules!r}))
"""


def test_every_module_is_listed() -> None:
    assert "trimail.protocol.connection" in MODULES
    assert "trimail.protocol.body" in MODULES
    assert len(MODULES) >= 12


def test_importing_the_core_imports_no_io() -> None:
    script = CHECK.format(
        imports="\n".join(["import trimail.protocol", *(f"import {name}" for name in MODULES)]),
        forbidden=set(FORBIDDEN),
        modules=MODULES,
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"ok {len(MODULES)}"


def test_no_module_mentions_trio_in_an_import() -> None:
    for name in MODULES:
        spec = pkgutil.resolve_name(name).__spec__
        assert spec is not None and spec.origin is not None
        origin = Path(spec.origin)
        if origin.suffix != ".py":  # a C module: its source says what it includes
            _check_c_includes(origin.parent / f"{name.rsplit('.', 1)[1]}.c")
            continue
        with origin.open(encoding="utf-8") as source:
            for line in source:
                stripped = line.strip()
                if stripped.startswith(("import ", "from ")):
                    assert not any(
                        word in FORBIDDEN for word in stripped.replace(".", " ").split()[1:2]
                    ), (name, stripped)


def _check_c_includes(source: Path) -> None:
    """A C module of the core includes Python's header only: no socket, file or clock API."""
    includes = [
        line.split()[1]
        for line in source.read_text(encoding="utf-8").splitlines()
        if line.startswith("#include")
    ]
    assert includes == ["<Python.h>"], (source, includes)
