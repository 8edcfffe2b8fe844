"""Training curves of GRPO runs from their ``metrics.jsonl`` (matplotlib, Agg backend, no display).

    python -m fastvideo.plots RUN_DIR [RUN_DIR ...] --out curves.png [--keys reward loss ...] [--smooth 10]

One panel per key, one line per run (labelled by the run directory's name) against the iteration.
The key ``reward`` expands to one panel per reward model (``reward/<name>_mean``, with a ± std band
from ``reward/<name>_std``), or ``reward_mean`` when the run logged no per-model breakdown. Other
keys are metric names as logged (``loss``, ``clipfrac``, ``approx_kl``, ``sec_per_iteration``,
``grad_norm``, ``lr``, ``time/rollout`` ...); a key no run logged is left out. With ``--smooth W``
the raw values are drawn faintly under a trailing moving average over W iterations.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

DEFAULT_KEYS: tuple[str, ...] = ("reward", "loss", "clipfrac", "approx_kl", "sec_per_iteration")
REWARD_KEY = "reward"


def read_metrics(run_dir: str | Path) -> list[dict]:
    """Records of ``<run_dir>/metrics.jsonl`` (or of the file itself), sorted by iteration."""
    path = Path(run_dir)
    path = path / "metrics.jsonl" if path.is_dir() else path
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return sorted(records, key=lambda r: r.get("iteration", 0))


def expand_keys(runs: Sequence[list[dict]], keys: Sequence[str]) -> list[str]:
    """Metric names to plot: ``reward`` becomes the per-model means; keys no run has are dropped."""
    present = {key for records in runs for record in records for key in record}
    expanded: list[str] = []
    for key in keys:
        if key == REWARD_KEY:
            per_model = sorted(k for k in present if k.startswith("reward/") and k.endswith("_mean"))
            expanded += per_model or (["reward_mean"] if "reward_mean" in present else [])
        elif key in present:
            expanded.append(key)
    return list(dict.fromkeys(expanded))


def series(records: list[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    """(iterations, values) of the records that hold a finite number for ``key``."""
    points = [(r["iteration"], float(r[key])) for r in records
              if isinstance(r.get(key), int | float) and math.isfinite(float(r[key]))]
    if not points:
        return np.zeros(0), np.zeros(0)
    xs, ys = zip(*points)
    return np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over the last ``window`` values (fewer at the start)."""
    if window <= 1 or values.size == 0:
        return values
    sums = np.cumsum(np.insert(values, 0, 0.0))
    index = np.arange(1, values.size + 1)
    start = np.maximum(index - window, 0)
    return (sums[index] - sums[start]) / (index - start)


def _draw_panel(axis, runs: dict[str, list[dict]], key: str, smooth: int) -> None:
    for label, records in runs.items():
        xs, ys = series(records, key)
        if xs.size == 0:
            continue
        line = axis.plot(xs, moving_average(ys, smooth), label=label, linewidth=1.5)[0]
        if smooth > 1:
            axis.plot(xs, ys, color=line.get_color(), alpha=0.25, linewidth=0.8)
        std_key = key[: -len("_mean")] + "_std" if key.endswith("_mean") else None
        if std_key is not None:
            sx, sy = series(records, std_key)
            if sx.size == xs.size and np.array_equal(sx, xs):
                mean = moving_average(ys, smooth)
                spread = moving_average(sy, smooth)
                axis.fill_between(xs, mean - spread, mean + spread, color=line.get_color(), alpha=0.15)
    axis.set_title(key, fontsize=10)
    axis.set_xlabel("iteration")
    axis.grid(alpha=0.3)
    if key in ("approx_kl",) and axis.get_lines() and all(
            (line.get_ydata() > 0).all() for line in axis.get_lines()):
        axis.set_yscale("log")


def plot_training_curves(run_dirs: Sequence[str | Path], out_png: str | Path,
                         keys: Sequence[str] = DEFAULT_KEYS, smooth: int = 0) -> Path:
    """Plot ``keys`` of each run's metrics.jsonl into ``out_png`` (one panel per expanded key)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs: dict[str, list[dict]] = {}
    for index, run_dir in enumerate(run_dirs):
        label = _label(Path(run_dir), index)
        runs[label if label not in runs else f"{label} ({index})"] = read_metrics(run_dir)
    panels = expand_keys(list(runs.values()), keys)
    columns = min(3, max(1, len(panels)))
    rows = max(1, math.ceil(len(panels) / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.2 * rows), squeeze=False)
    for axis, key in zip(axes.flat, panels):
        _draw_panel(axis, runs, key, smooth)
    for axis in list(axes.flat)[len(panels):]:
        axis.axis("off")
    if not panels:
        axes[0, 0].text(0.5, 0.5, f"no metric among {list(keys)}", ha="center", va="center")
    if len(runs) > 1 and panels:
        axes[0, 0].legend(fontsize=8)
    figure.tight_layout()
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=100)
    plt.close(figure)
    return out


def _label(run_dir: Path, index: int) -> str:
    name = run_dir.name if run_dir.is_dir() else run_dir.parent.name
    return name or f"run{index}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="+", help="run directories (or metrics.jsonl files)")
    parser.add_argument("--out", required=True, help="output PNG")
    parser.add_argument("--keys", nargs="+", default=list(DEFAULT_KEYS))
    parser.add_argument("--smooth", type=int, default=0, help="moving-average window in iterations")
    args = parser.parse_args(argv)
    print(plot_training_curves(args.run_dirs, args.out, args.keys, args.smooth))


if __name__ == "__main__":
    from fastvideo.errors import run_cli

    run_cli(main)
