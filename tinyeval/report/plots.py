"""PNG plots of a run: accuracy vs trainable parameters (the paper's Figures 1-2) and training curves.

Matplotlib runs headless (Agg): CI machines have no display.
"""

from __future__ import annotations

from pathlib import Path

from tinyeval.io import atomic_path
from tinyeval.report.results import Results

_SERIES_STYLE = {"GRPO": dict(marker="o", color="tab:blue"), "SFT": dict(marker="s", color="tab:orange")}


def _save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")


def accuracy_vs_params(results: Results, task: str, path: Path) -> Path | None:
    """Score vs trainable parameters on a log axis, RL and SFT as separate series, base as a dashed line.

    Each point is labelled with its method. Lenient accuracy is the y value for math tasks (correctness);
    strict is drawn hollow at the same x so a format-only gain shows as a gap between the two markers.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = [c for c in results.cells if c.status == "done" and task in c.scores]
    trained = [c for c in cells if c.algo is not None and c.trainable > 0]
    if not trained:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for series in sorted({c.series for c in trained}):
        pts = sorted((c for c in trained if c.series == series), key=lambda c: c.trainable)
        style = _SERIES_STYLE.get(series, dict(marker="^", color="tab:green"))
        ys = [100 * (c.scores[task].lenient if c.scores[task].lenient is not None else c.scores[task].value) for c in pts]
        ax.plot([c.trainable for c in pts], ys, label=series, **style)
        if all(c.scores[task].strict is not None for c in pts):
            ax.scatter([c.trainable for c in pts], [100 * c.scores[task].strict for c in pts], facecolors="none",
                       edgecolors=style["color"], marker=style["marker"], label=f"{series} (strict)")
        for c, y in zip(pts, ys):
            ax.annotate(c.name, (c.trainable, y), textcoords="offset points", xytext=(3, 4), fontsize=7)
    base = next((c for c in cells if c.method == "base"), None)
    if base is not None:
        b = base.scores[task]
        ax.axhline(100 * (b.lenient if b.lenient is not None else b.value), color="gray", ls="--", label="base")
    ax.set_xscale("log")
    ax.set_xlabel("trainable parameters (log)")
    ax.set_ylabel(f"{task} accuracy (%, hollow = strict)")
    ax.set_title(f"{results.model}: {task} vs update size")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    _save(fig, path)
    plt.close(fig)
    return path


def training_curves(results: Results, path: Path, key: str = "reward_mean") -> Path | None:
    """Per-cell training curve of `key` (mean reward for GRPO, loss for SFT) against the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = [c for c in results.cells if c.curve]
    if not cells:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, algo, metric in ((axes[0], "grpo", key), (axes[1], "sft", "loss")):
        for c in (c for c in cells if c.algo == algo):
            pts = [(r["step"], r[metric]) for r in c.curve if metric in r]
            if pts:
                ax.plot(*zip(*pts), label=c.name)
        ax.set_title(f"{algo.upper()}: {metric}")
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
    _save(fig, path)
    plt.close(fig)
    return path


def render_all(results: Results, out_dir: Path) -> list[str]:
    """Write every plot for `results` into out_dir; returns their file names (for report.md links)."""
    written = []
    for task in results.tasks:
        if accuracy_vs_params(results, task, out_dir / f"accuracy_vs_params_{task}.png"):
            written.append(f"accuracy_vs_params_{task}.png")
    if training_curves(results, out_dir / "training_curves.png"):
        written.append("training_curves.png")
    return written
