"""PNG figures for the card, rendered headless with matplotlib's Agg backend.

The PNG metadata carries no date and no software version, so the same statistics give the same
bytes and an unchanged rebuild uploads nothing.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import NullFormatter, ScalarFormatter  # noqa: E402

from dataset_builder.stats import CorpusStats  # noqa: E402
from kit.schema import ROLES, TASK_TYPES  # noqa: E402

PNG_METADATA = {"Software": None}
LENGTHS_PNG = "length_distributions.png"
COUNTS_PNG = "task_type_counts.png"
LANGUAGES_PNG = "languages.png"
TOP_LANGUAGES = 25


def _save(figure: plt.Figure, path: Path) -> None:
    figure.tight_layout()
    figure.savefig(path, dpi=100, metadata=PNG_METADATA)
    plt.close(figure)


def plot_lengths(stats: CorpusStats, path: Path) -> None:
    """One panel per task type: character-length histograms of query, positive and negative."""
    figure, axes = plt.subplots(2, 3, figsize=(13, 7), squeeze=False)
    for axis, task_type in zip(axes.flat, TASK_TYPES, strict=True):
        by_role = {role: stats.length_array(task_type, role) for role in ROLES}
        present = [lengths for lengths in by_role.values() if len(lengths)]
        if present:
            low = max(1, min(int(lengths.min()) for lengths in present))
            high = max(int(lengths.max()) for lengths in present) + 1
            wide = high / low > 10  # log-spaced bins only where lengths span decades
            edges = (
                np.geomspace(low, high, 41) if wide else np.linspace(low, max(high, low + 1), 41)
            )
            for role, lengths in by_role.items():
                if len(lengths):
                    counts, _ = np.histogram(lengths, bins=edges)
                    axis.stairs(counts, edges, fill=True, alpha=0.45, label=role)
            if wide:
                axis.set_xscale("log")
                axis.xaxis.set_major_formatter(ScalarFormatter())
                axis.xaxis.set_minor_formatter(NullFormatter())
        axis.set_title(task_type)
        axis.set_xlabel("characters")
        if stats.by_type[task_type]:
            axis.legend(fontsize=8)
        else:
            axis.text(0.5, 0.5, "no rows", ha="center", va="center", transform=axis.transAxes)
    figure.suptitle("Text length in characters by task type and role")
    _save(figure, path)


def plot_type_counts(stats: CorpusStats, path: Path) -> None:
    figure, axis = plt.subplots(figsize=(8, 4))
    counts = [stats.by_type[task_type] for task_type in TASK_TYPES]
    axis.bar(TASK_TYPES, counts, color="tab:blue")
    for x, count in enumerate(counts):
        axis.annotate(str(count), (x, count), ha="center", va="bottom", fontsize=8)
    axis.set_ylabel("rows")
    axis.set_title("Rows per task type")
    _save(figure, path)


def plot_languages(stats: CorpusStats, path: Path) -> None:
    """Rows per verified source language (the most frequent; the rest summed in one bar)."""
    ranked = sorted(stats.verified_languages.items(), key=lambda item: (-item[1], item[0]))
    shown = ranked[:TOP_LANGUAGES]
    rest = sum(count for _, count in ranked[TOP_LANGUAGES:])
    labels = [code for code, _ in shown] + (["other"] if rest else [])
    counts = [count for _, count in shown] + ([rest] if rest else [])
    figure, axis = plt.subplots(figsize=(10, 4))
    axis.bar(labels, counts, color="tab:green")
    axis.set_ylabel("rows")
    axis.set_title("Rows per source language, verified by language identification")
    axis.tick_params(axis="x", labelrotation=60, labelsize=8)
    _save(figure, path)


def write_plots(stats: CorpusStats, folder: Path) -> list[str]:
    """Write the figures into ``folder``; return their names in the order the card shows them."""
    plot_type_counts(stats, folder / COUNTS_PNG)
    plot_languages(stats, folder / LANGUAGES_PNG)
    plot_lengths(stats, folder / LENGTHS_PNG)
    return [COUNTS_PNG, LANGUAGES_PNG, LENGTHS_PNG]
