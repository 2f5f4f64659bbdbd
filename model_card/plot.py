"""One bar chart: each task's main score for the trained model next to its base model."""

from __future__ import annotations

import io
from pathlib import Path

from kit.artifacts import EvaluationResults
from kit.files import atomic_write_bytes


def plot_results(results: EvaluationResults, out_path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = results.tasks
    labels = [f"{t.name}\n({t.main_score})" for t in tasks]
    trained = [t.results["trained"].main_score * 100 for t in tasks]
    has_base = all("base" in t.results for t in tasks)
    height = 0.38 if has_base else 0.6
    fig, ax = plt.subplots(figsize=(7.5, 1.2 + 0.8 * len(tasks)))
    positions = list(range(len(tasks)))
    bars = ax.barh(
        [p - (height / 2 if has_base else 0) for p in positions],
        trained,
        height=height,
        color="#2f6db3",
        label="this model",
    )
    ax.bar_label(bars, fmt="%.1f", padding=2, fontsize=8)
    if has_base:
        base = [t.results["base"].main_score * 100 for t in tasks]
        bars = ax.barh(
            [p + height / 2 for p in positions],
            base,
            height=height,
            color="#b0b0b0",
            label="base model",
        )
        ax.bar_label(bars, fmt="%.1f", padding=2, fontsize=8)
    ax.set_yticks(positions, labels, fontsize=8)
    ax.invert_yaxis()
    low = min([0.0, *trained, *(base if has_base else [])])
    ax.set_xlim(low - 5 if low < 0 else 0, 105)
    ax.axvline(0, color="black", linewidth=0.6)
    ax.set_xlabel("score × 100 (main metric of each task)")
    ax.set_title(f"mteb {results.mteb_version}: this model vs. its base model")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    image = io.BytesIO()
    # No software version in the PNG: the same scores give the same bytes.
    fig.savefig(image, format="png", dpi=110, metadata={"Software": None})
    plt.close(fig)
    return atomic_write_bytes(out_path, image.getvalue())
