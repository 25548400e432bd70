"""Medians, ratios and the markdown tables of a run.

Why medians of interleaved rounds: on a shared machine a neighbour's burst slows whatever runs
during it. Interleaving (A B C, A B C, ...) spreads every burst over all servers instead of
charging it to one, and the median of the rounds ignores the round a burst hit. The spread
``(max - min) / median`` is printed next to each median so a noisy cell is visible as noisy.

Ratios are read against two references: the Trio floor (what a Trio server on
``trio.SocketStream`` could at most reach; the ``floor-lean`` row shows it on trimail's leaner
socket layer) and aiosmtpd (the usual Python choice): the discard rows against aiosmtpd's ``Sink``,
the Maildir row against aiosmtpd's ``Mailbox``.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

FLOOR = "floor"


@dataclass
class Series:
    """One cell's rounds: the values of rounds that succeeded, and how many failed."""

    values: list[float] = field(default_factory=list)
    failed: int = 0
    #: Shown after the value, e.g. that a limit cut the measurement short.
    note: str = ""

    @property
    def median(self) -> float | None:
        return statistics.median(self.values) if self.values else None

    @property
    def spread(self) -> float | None:
        median = self.median
        if not median or len(self.values) < 2:
            return None
        return (max(self.values) - min(self.values)) / median


@dataclass(frozen=True)
class Row:
    key: str
    label: str
    #: The aiosmtpd row this one is compared with, or None.
    aiosmtpd_peer: str | None


def _number(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}" if value >= 1 else f"{value:.2g}"


def _ratio(value: float | None, reference: float | None) -> str:
    if value is None or not reference:
        return "-"
    return f"{value / reference:.2f}"


def cell_text(
    series: Series | None, floor: Series | None, peer: Series | None, *, is_floor: bool
) -> str:
    """``median ±spread (x floor / x aiosmtpd)``; a dagger when some rounds failed."""
    if series is None:
        return "skipped"
    median = series.median
    if median is None:
        return f"failed ({series.failed})"
    text = _number(median)
    if series.spread is not None:
        text += f" ±{series.spread:.0%}"
    floor_ratio = "-" if is_floor else _ratio(median, floor.median if floor else None)
    peer_ratio = _ratio(median, peer.median if peer else None) if peer is not None else "-"
    text += f" ({floor_ratio} / {peer_ratio})"
    if series.failed:
        text += f" †{series.failed}"
    if series.note:
        text += f" [{series.note}]"
    return text


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    align = ["---"] + ["---:"] * (len(header) - 1)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _grid(
    rows: Sequence[Row], columns: Sequence[tuple[str, str]], cell: Callable[[Row, str], str]
) -> list[str]:
    """Rows are servers, columns ``(key, label)``; ``cell(row, column key)`` is the text."""
    body = [[row.label, *(cell(row, column) for column, _ in columns)] for row in rows]
    return _table(["server", *(label for _, label in columns)], body)


def throughput_table(
    rows: Sequence[Row],
    columns: Sequence[tuple[str, str]],
    cells: Mapping[tuple[str, str], Series],
) -> list[str]:
    """Medians with their spread and ratios to the floor and to the aiosmtpd peer."""

    def cell(row: Row, column: str) -> str:
        peer = cells.get((row.aiosmtpd_peer, column)) if row.aiosmtpd_peer else None
        floor = cells.get((FLOOR, column))
        return cell_text(cells.get((row.key, column)), floor, peer, is_floor=row.key == FLOOR)

    return _grid(rows, columns, cell)


def plain_table(
    rows: Sequence[Row],
    columns: Sequence[tuple[str, str]],
    cells: Mapping[tuple[str, str], Series],
) -> list[str]:
    """Medians only (for secondary numbers such as CPU per message)."""

    def cell(row: Row, column: str) -> str:
        series = cells.get((row.key, column))
        median = series.median if series is not None else None
        return "-" if median is None else _number(median)

    return _grid(rows, columns, cell)


def micro_table(results: Sequence[Mapping[str, object]]) -> list[str]:
    """The micro-benchmark rows as ``micro.py --json`` printed them."""
    body = []
    for result in results:
        ops = result.get("ops_per_second")
        per_op = result.get("microseconds_per_op")
        rate = result.get("megabytes_per_second")
        body.append(
            [
                str(result.get("name", "?")),
                _number(ops) if isinstance(ops, float) else "-",
                f"{per_op:.2f}" if isinstance(per_op, float) else "-",
                _number(rate) if isinstance(rate, float) else "-",
            ]
        )
    return _table(["micro-benchmark", "ops/s", "µs/op", "MB/s"], body)
