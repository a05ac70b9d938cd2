"""Plots of the drift tests (matplotlib, Agg backend: no display needed).

Examples
--------
>>> import tempfile, os
>>> p = os.path.join(tempfile.mkdtemp(), "hr.png")
>>> plot_windowed_hr(p, {"a": ([0, 10, 20], [0.1, 0.2, 0.3])}, shift=10, swaps=[15])
>>> os.path.getsize(p) > 1000
True
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

#: Fixed colours so that a system looks the same in every plot.
COLOURS = {
    "driftrec": "#d62728",
    "driftrec_no_lora": "#ff7f0e",
    "frozen": "#1f77b4",
    "popularity": "#7f7f7f",
    "recent_popularity": "#bcbd22",
    "item_knn": "#2ca02c",
    "river_mf": "#9467bd",
    "newest": "#8c564b",
    "content_tfidf": "#e377c2",
}


def _pyplot():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_windowed_hr(
    path: str | os.PathLike[str],
    series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    shift: float | None = None,
    swaps: Sequence[float] = (),
    title: str = "",
    xlabel: str = "events",
    ylabel: str = "windowed HR@10",
    dpi: int = 90,
) -> None:
    """Write a PNG of windowed hit rates, one line per system.

    Parameters
    ----------
    path : the PNG to write (folders are created)
    series : name -> (x, hr); x is an event position or a timestamp, the same for all
    shift : x of a known interest shift (a dashed vertical line), or None
    swaps : x of every hot-swap (small ticks on the top edge)
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.2))
    for name, (x, y) in series.items():
        # the full system on top, its ablation dashed: where they coincide both stay visible
        ax.plot(
            list(x),
            list(y),
            label=name,
            color=COLOURS.get(name),
            linewidth=2.0 if name == "driftrec" else 1.2,
            zorder=3 if name == "driftrec" else 2,
            linestyle=(0, (4, 3)) if name == "driftrec_no_lora" else "-",
        )
    if shift is not None:
        ax.axvline(shift, color="black", linestyle="--", linewidth=1.0, label="shift")
    if len(swaps):
        ax.plot(
            list(swaps),
            [1.0] * len(swaps),
            linestyle="none",
            marker="v",
            markersize=5,
            color=COLOURS["driftrec"],
            transform=ax.get_xaxis_transform(),
            clip_on=False,
            label="hot-swap",
        )
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_ylim(bottom=0)
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2, loc="best")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
