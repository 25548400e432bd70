"""benchmarks/machine_speed.py: the probes the runner records at the start and end of a run."""

from __future__ import annotations

from pathlib import Path

import pytest

from .scripts import load_script

machine_speed = load_script("machine_speed")
run = load_script("run")


def test_the_disk_probe_leaves_every_file_durable_in_place(tmp_path: Path) -> None:
    rate = machine_speed.durable_files_per_second(tmp_path / "probe", seconds=60.0, limit=5)
    assert rate > 0
    assert sorted(p.name for p in (tmp_path / "probe" / "new").iterdir()) == list("01234")
    assert list((tmp_path / "probe" / "tmp").iterdir()) == []
    assert (tmp_path / "probe" / "new" / "3").read_bytes() == b"x" * 1024


def test_the_disk_probe_stops_when_its_time_is_up(tmp_path: Path) -> None:
    machine_speed.durable_files_per_second(tmp_path / "probe", seconds=0.0, limit=1_000)
    assert len(list((tmp_path / "probe" / "new").iterdir())) == 1


def test_the_header_line_reads_what_the_runner_recorded() -> None:
    speed = machine_speed.MachineSpeed(python_loop_ms=2.5, durable_files_per_second=1234.4)
    recorded = run.speed_json(speed)
    assert recorded == {"python_loop_ms": 2.5, "durable_files_per_second": 1234.4}
    assert run._speed(recorded) == "Python loop 2.50 ms, 1,234 durable files/s"
    assert run._speed(None) == "?"


def test_the_loop_probe_gives_a_time_in_milliseconds() -> None:
    assert 0 < machine_speed.python_loop_ms(iterations=1_000) < 1_000


def test_a_probe_that_fails_is_a_note_not_the_end_of_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full_disk(directory: Path) -> object:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(run, "measure", full_disk)
    results = run.Results(meta={})
    run.record_speed(results, tmp_path, "end")
    assert "speed_end" not in results.meta
    assert results.notes == [
        "machine speed at end: not measured ([Errno 28] No space left on device)"
    ]


def test_a_probe_that_works_is_recorded(tmp_path: Path) -> None:
    results = run.Results(meta={})
    run.record_speed(results, tmp_path, "start")
    recorded = results.meta["speed_start"]
    assert set(recorded) == {"python_loop_ms", "durable_files_per_second"}
    assert results.notes == []
