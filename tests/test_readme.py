"""The README's promises: its test command is what CI runs, and its config example is valid."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from trimail.config.loading import structure_config

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_ci_runs_the_readme_test_command() -> None:
    commands = re.findall(r"^    (python3 -m venv .*)$", README, re.MULTILINE)
    assert len(commands) >= 2
    test_command = commands[1]
    assert "pytest" in test_command
    assert test_command in (ROOT / ".ci" / "run").read_text().splitlines()


def test_readme_config_example_is_a_valid_config() -> None:
    [example] = re.findall(r"```toml\n(.*?)```", README, re.DOTALL)
    config = structure_config(tomllib.loads(example))
    assert config.hostname == "mx.example.test"
    assert [str(address) for address in config.listen] == ["127.0.0.1:2525", "[::1]:2525"]
    assert config.limits.max_recipients == 100
