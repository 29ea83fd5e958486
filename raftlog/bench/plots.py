"""PNG plots of a run: throughput vs connections, and the latency CDF (matplotlib).

matplotlib is optional (``pip install 'raftlog[bench]'``). Contracts:
``matplotlib_missing()`` is ``None`` when it can be imported, else the sentence to
print (with the install command); ``render_plots(curves, cdfs, out_dir)`` writes
``throughput_vs_connections.png`` and ``latency_cdf.png`` into ``out_dir`` (created if
needed) and returns their paths. ``curves`` maps a label to ``{connections: (min,
median, max) ops/s}``; ``cdfs`` maps a label to ``[(percentile, ms), ...]``. It uses
the non-interactive Agg backend and never opens a window.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["INSTALL_HINT", "matplotlib_missing", "render_plots"]

INSTALL_HINT = "pip install 'raftlog[bench]' (or: pip install 'matplotlib>=3.5')"


def matplotlib_missing() -> str | None:
    try:
        importlib.import_module("matplotlib")
    except ImportError:
        return f"matplotlib is not installed, so no plots were drawn: {INSTALL_HINT}"
    return None


def _pyplot() -> Any:
    matplotlib = importlib.import_module("matplotlib")
    matplotlib.use("Agg")
    return importlib.import_module("matplotlib.pyplot")


def render_plots(
    curves: Mapping[str, Mapping[int, tuple[float, float, float]]],
    cdfs: Mapping[str, Sequence[tuple[float, float]]],
    out_dir: Path,
) -> list[Path]:
    """Write the two PNGs (module docstring)."""
    plt = _pyplot()
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, points in curves.items():
        xs = sorted(points)
        medians = [points[x][1] for x in xs]
        below = [points[x][1] - points[x][0] for x in xs]
        above = [points[x][2] - points[x][1] for x in xs]
        color = "tab:blue" if label.startswith("raftlog") else "tab:orange"
        ax.errorbar(
            xs, medians, yerr=[below, above], marker="o", capsize=3, color=color, label=label
        )
    ax.set_xscale("log", base=2)
    ticks = sorted({x for points in curves.values() for x in points})
    ax.set_xticks(ticks, [str(x) for x in ticks])
    ax.set_xlabel("connections (wrk, to the leader)")
    ax.set_ylabel("acknowledged writes/s (median, min-max bars)")
    ax.set_title("Throughput vs connections: raftlog appends and etcd puts")
    ax.grid(True, alpha=0.3)
    ax.legend()
    path = out_dir / "throughput_vs_connections.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, cdf in cdfs.items():
        style = "--" if label.endswith(" 1 conn") else "-"
        color = "tab:blue" if label.startswith("raftlog") else "tab:orange"
        ax.plot([ms for _, ms in cdf], [p / 100.0 for p, _ in cdf], style, color=color, label=label)
    ax.set_xscale("log")
    ax.set_xlabel("latency (ms, log scale)")
    ax.set_ylabel("fraction of requests")
    ax.set_title("Latency CDF of writes (wrk; median repetition)")
    ax.grid(True, alpha=0.3)
    ax.legend()
    path = out_dir / "latency_cdf.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)
    return written
