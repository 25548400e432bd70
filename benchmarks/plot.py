"""Plot a run's median throughput: one panel per load generator, bars per server by scenario.

Runs in the peers venv (matplotlib lives there, not in trimail's environment):
``benchmarks/.venv-peers/bin/python benchmarks/plot.py results.json throughput.png``.
``run.py`` calls it after writing ``results.json``. The y axis is logarithmic because the
servers span more than an order of magnitude (Postfix's C sink against Python servers).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

import matplotlib  # type: ignore[import-not-found, unused-ignore]

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # type: ignore[import-not-found, unused-ignore]

Cell = tuple[str, str, str]


Labels = dict[str, str]


def load(path: Path) -> tuple[dict[Cell, float], Labels, Labels, Labels]:
    """Medians by (server, scenario, generator), and the labels of each, in run order."""
    document = json.loads(path.read_text())
    medians: dict[Cell, float] = {}
    servers: Labels = {}
    scenarios: Labels = {}
    generators: Labels = {}
    for entry in document["medians"]:
        value = entry["msg_per_s"]
        if not isinstance(value, int | float):
            continue
        medians[(entry["server"], entry["scenario"], entry["generator"])] = float(value)
        servers.setdefault(entry["server"], entry["server_label"])
        scenarios.setdefault(entry["scenario"], entry["scenario_label"])
        generators.setdefault(entry["generator"], entry["generator_label"])
    return medians, servers, scenarios, generators


def draw(
    medians: dict[Cell, float], servers: Labels, scenarios: Labels, generators: Labels, out: Path
) -> None:
    figure, axes = plt.subplots(1, len(generators), figsize=(7 * len(generators), 5), squeeze=False)
    width = 0.8 / max(1, len(servers))
    for axis, (generator, title) in zip(axes[0], generators.items(), strict=True):
        for index, (server, label) in enumerate(servers.items()):
            xs = [position + index * width for position in range(len(scenarios))]
            ys = [medians.get((server, scenario, generator), 0.0) for scenario in scenarios]
            axis.bar(xs, ys, width, label=label)
        axis.set_xticks([p + width * (len(servers) - 1) / 2 for p in range(len(scenarios))])
        axis.set_xticklabels(list(scenarios.values()))
        axis.set_yscale("log")
        axis.set_ylabel("messages/s (median)")
        axis.set_title(title)
        axis.grid(axis="y", which="both", alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=min(6, len(labels)), fontsize="small")
    figure.suptitle("SMTP throughput by scenario (sessions x message size)")
    figure.tight_layout(rect=(0, 0.07, 1, 1))
    figure.savefig(out, dpi=110)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2:
        print("usage: plot.py RESULTS.json OUT.png", file=sys.stderr)
        return 2
    medians, servers, scenarios, generators = load(Path(args[0]))
    if not medians:
        print("plot.py: no medians to plot", file=sys.stderr)
        return 1
    draw(medians, servers, scenarios, generators, Path(args[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
