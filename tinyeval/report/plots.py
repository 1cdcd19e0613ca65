"""PNG plots of a run: accuracy vs trainable parameters (the paper's Figures 1-2) and training curves.

Matplotlib runs headless (Agg): CI machines have no display.
"""

from __future__ import annotations

from pathlib import Path

from tinyeval.io import atomic_path
from tinyeval.report.results import Results, TaskScore
from tinyeval.report.stats import mean_score

_SERIES_STYLE = {"GRPO": dict(marker="o", color="tab:blue"), "SFT": dict(marker="s", color="tab:orange")}


def _save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")


def _y(score: TaskScore) -> float:
    return 100 * (score.lenient if score.lenient is not None else score.value)


def _twin_of(results: Results, task: str) -> str | None:
    from tinyeval.eval.tasks import TWINS

    return next((t for t, orig in TWINS.items() if orig == task and t in results.tasks), None)


def accuracy_vs_params(results: Results, task: str, path: Path) -> Path | None:
    """Score vs trainable parameters on a log axis, RL and SFT as separate series, base as a dashed line.

    The line joins each cell's mean over seeds, labelled with the cell; each seed is a small dot at the same x.
    Lenient accuracy is the y value for math tasks (correctness); the strict mean is drawn hollow at the same x so
    a format-only gain shows as a gap between the two markers.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    means = {c.name: m for c in results.cells if (m := mean_score(c.seeds, task)) is not None}
    trained = [c for c in results.cells if c.name in means and c.algo is not None and c.trainable > 0
               and not c.name.endswith(("-random", "-format"))]
    if not trained:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for series in sorted({c.series for c in trained}):
        pts = sorted((c for c in trained if c.series == series), key=lambda c: c.trainable)
        style = _SERIES_STYLE.get(series, dict(marker="^", color="tab:green"))
        ys = [_y(means[c.name]) for c in pts]
        ax.plot([c.trainable for c in pts], ys, label=f"{series} (mean over seeds)", **style)
        seeds = [(c.trainable, _y(s.scores[task])) for c in pts for s in c.done_seeds if task in s.scores]
        ax.scatter(*zip(*seeds), s=10, color=style["color"], alpha=0.45, label=f"{series} (each seed)")
        if all(means[c.name].strict is not None for c in pts):
            ax.scatter([c.trainable for c in pts], [100 * means[c.name].strict for c in pts], facecolors="none",
                       edgecolors=style["color"], marker=style["marker"], label=f"{series} (strict)")
        twin = _twin_of(results, task)
        twin_means = [mean_score(c.seeds, twin) if twin else None for c in pts]
        if any(m is not None for m in twin_means):
            ax.scatter([c.trainable for c, m in zip(pts, twin_means) if m], [_y(m) for m in twin_means if m],
                       marker="x", color=style["color"], label=f"{series} on {twin}")
        for c, y in zip(pts, ys):
            ax.annotate(c.name, (c.trainable, y), textcoords="offset points", xytext=(3, 4), fontsize=7)
    base = next((c for c in results.cells if c.method == "base" and c.name in means), None)
    if base is not None:
        ax.axhline(_y(means[base.name]), color="gray", ls="--", label="base")
    for c in results.cells:  # controls: a reference line each, not a point of the budget series
        if c.is_control and c.name in means:
            ax.axhline(_y(means[c.name]), color="tab:red", ls=":", lw=1, label=f"control {c.name}")
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
    """Per-cell training curves of `key` (mean reward for GRPO, loss for SFT) against the step, one per seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = [c for c in results.cells if any(s.curve for s in c.seeds)]
    if not cells:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, algo, metric in ((axes[0], "grpo", key), (axes[1], "sft", "loss")):
        for c in (c for c in cells if c.algo == algo):
            color = None
            for seed in c.seeds:  # one line per seed, one colour and label per cell
                pts = [(r["step"], r[metric]) for r in seed.curve if metric in r]
                if pts:
                    line, = ax.plot(*zip(*pts), label=c.name if color is None else None, color=color,
                                    alpha=1.0 if len(c.seeds) == 1 else 0.7)
                    color = line.get_color()
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
    from tinyeval.eval.tasks import TWINS

    for task in results.tasks:
        if task in TWINS and TWINS[task] in results.tasks:
            continue  # drawn as crosses on its original's plot
        if accuracy_vs_params(results, task, out_dir / f"accuracy_vs_params_{task}.png"):
            written.append(f"accuracy_vs_params_{task}.png")
    if training_curves(results, out_dir / "training_curves.png"):
        written.append("training_curves.png")
    return written
