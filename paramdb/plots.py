"""Figures for evaluation results and benchmarks: grouped bar panels written as one PNG.

matplotlib is an optional extra (``pip install 'paramdb[plot]'``): it is imported only here and only when a
figure is asked for. The target is checked before any work starts, so a long evaluation never ends in a
plot it cannot write; the file is written beside its target and renamed into place.
"""
from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from .errors import InvalidInput, MissingDependency

SUFFIXES = (".png", ".svg", ".pdf")


@dataclass
class Panel:
    """One bar chart: ``series`` name -> one value per label, drawn as groups of bars side by side."""

    title: str
    labels: list[str]
    series: dict[str, list[float]]
    ylabel: str = ""
    fmt: str = "{:.3g}"
    log: bool = False
    ylim: tuple[float, float] | None = None
    notes: list[str] = field(default_factory=list)


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise MissingDependency("plotting needs matplotlib: pip install 'paramdb[plot]'") from None
    matplotlib.use("Agg")        # files only: never a window, works without a display
    import matplotlib.pyplot as plt
    return plt


def check_target(path: str | Path) -> Path:
    """Refuse, before any work, a plot path ParamDB could not write (or matplotlib is missing)."""
    path = Path(path)
    if path.suffix.lower() not in SUFFIXES:
        raise InvalidInput(f"{path}: a plot must be {', '.join(SUFFIXES)}")
    if not path.parent.is_dir():
        raise InvalidInput(f"{path}: folder {path.parent} does not exist")
    if path.is_dir():
        raise InvalidInput(f"{path}: is a folder")
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise InvalidInput(f"{path}: cannot write in {path.parent} (permission denied)")
    _pyplot()
    return path


def write(path: str | Path, panels: list[Panel], title: str) -> Path:
    """Draw ``panels`` side by side under ``title`` and write them to ``path`` atomically."""
    path = check_target(path)
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.2), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        _draw(ax, panel)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}{path.suffix}")
    try:
        fig.savefig(tmp, dpi=120)
        os.replace(tmp, path)
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot write the plot: {exc.strerror or exc}") from None
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)
    return path


def _draw(ax, panel: Panel) -> None:
    n = len(panel.series)
    width = 0.8 / max(n, 1)
    for i, (name, values) in enumerate(panel.series.items()):
        xs = [j + (i - (n - 1) / 2) * width for j in range(len(panel.labels))]
        bars = ax.bar(xs, values, width, label=name)
        ax.bar_label(bars, labels=[panel.fmt.format(v) for v in values], fontsize=8, padding=2)
    ax.set_xticks(range(len(panel.labels)), panel.labels, fontsize=9)
    ax.set_title(panel.title, fontsize=10)
    ax.set_ylabel(panel.ylabel)
    if panel.log:
        ax.set_yscale("log")
    if panel.ylim:
        ax.set_ylim(*panel.ylim)
    else:
        ax.margins(y=0.15)
    if n > 1:
        ax.legend(fontsize=8)
    for k, note in enumerate(panel.notes):
        ax.text(0.01, -0.16 - 0.06 * k, note, transform=ax.transAxes, fontsize=7, va="top")
    ax.spines[["top", "right"]].set_visible(False)


def eval_figure(result: dict, path: str | Path) -> Path:
    """``paramdb eval``'s result: EM and F1 per mode, and seconds per question per mode."""
    modes = list(result["modes"])
    m = result["modes"]
    quality = Panel("answer quality", modes, {"EM (in output)": [m[x]["em"] for x in modes],
                                              "token F1": [m[x]["f1"] for x in modes]},
                    ylabel="score", fmt="{:.3f}", ylim=(0, 1.08))
    speed = Panel("time per question", modes, {"s/question": [m[x]["s_per_q"] for x in modes]},
                  ylabel="seconds", fmt="{:.2f}")
    title = (f"{result['items']} items, k={result['k']}, {result['method']} retrieval "
             f"(recall@{result['k']} {result['recall_at_k']:.3f}), {result.get('merge', 'mean')} merge")
    return write(path, [quality, speed], title)
