"""The peers venv: aiosmtpd and matplotlib, kept out of trimail's own environment.

Why a separate venv: trimail's dev environment is what its tests and type checks run in, and a
benchmark must not add packages to it (a stray import would then pass locally and fail in CI).
The venv lives in ``benchmarks/.venv-peers`` (git-ignored) and is created on first use with
the interpreter that runs the benchmarks. Each package is installed on its own, so a missing
matplotlib costs only the plot and a missing aiosmtpd only its two rows. Nothing here is
fatal: whatever cannot be installed is reported once and skipped.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

PEERS_DIR = Path(__file__).resolve().parent / ".venv-peers"
#: Requirement per importable module; minor versions float within a major series.
REQUIREMENTS = {"aiosmtpd": "aiosmtpd>=1.4,<2", "matplotlib": "matplotlib>=3.7,<4"}
VENV_BOUND = 180.0
INSTALL_BOUND = 900.0
PROBE_BOUND = 60.0


@dataclass
class Peers:
    """What the peers venv offers: its interpreter and the version of each package in it."""

    python: Path | None
    versions: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def has(self, module: str) -> bool:
        return self.python is not None and module in self.versions


def _python(directory: Path) -> Path:
    return directory / "bin" / "python"


def _version(python: Path, package: str) -> str | None:
    """The installed version, or None when the package is missing or does not import."""
    code = (
        "import importlib, importlib.metadata as m, sys\n"
        f"importlib.import_module({package!r})\n"
        f"print(m.version({package!r}))\n"
    )
    try:
        done = subprocess.run(
            [str(python), "-c", code],
            check=False,
            capture_output=True,
            text=True,
            timeout=PROBE_BOUND,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _run(argv: list[str], bound: float) -> str | None:
    """Run a set-up step; None on success, else its last line of output (for the skip note)."""
    try:
        done = subprocess.run(
            argv,
            check=False,
            capture_output=True,
            text=True,
            timeout=bound,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return f"timed out after {bound:.0f} s"
    except OSError as exc:
        return str(exc)
    if done.returncode == 0:
        return None
    lines = [line for line in (done.stderr + done.stdout).splitlines() if line.strip()]
    return lines[-1] if lines else f"exit status {done.returncode}"


def _create_venv(directory: Path) -> str | None:
    if _python(directory).exists():
        return None
    print(f"peers: creating {directory} (aiosmtpd, matplotlib)", file=sys.stderr, flush=True)
    return _run([sys.executable, "-m", "venv", str(directory)], VENV_BOUND)


def ensure_peers(directory: Path = PEERS_DIR, *, install: bool = True) -> Peers:
    """Use the peers venv, creating it and installing what is missing when ``install``."""
    python = _python(directory)
    peers = Peers(python=None)
    if install and (problem := _create_venv(directory)) is not None:
        peers.notes.append(f"peers venv could not be created ({problem})")
        return peers
    if not python.exists():
        peers.notes.append(f"no peers venv at {directory} (run without --no-install)")
        return peers
    peers.python = python
    for module, requirement in REQUIREMENTS.items():
        version = _version(python, module)
        if version is None and install:
            print(f"peers: pip install {requirement}", file=sys.stderr, flush=True)
            pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
            problem = _run([*pip, requirement], INSTALL_BOUND)
            version = _version(python, module)
            if version is None:
                peers.notes.append(f"{module} could not be installed ({problem or 'import fails'})")
                continue
        if version is None:
            peers.notes.append(f"{module} is not installed in {directory}")
            continue
        peers.versions[module] = version
    return peers
