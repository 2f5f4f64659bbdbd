"""The trained model's mteb results, staged with the model and turned into its model-index.

mteb's ``ResultCache`` keeps one JSON file per task under
``results/<org>__<model>/<revision>/`` with a ``model_meta.json`` beside them: the layout the
mteb results repository takes. The same files are copied into the card folder, so they are
published in the model repo beside the card, and the card's model-index is read back from
those copies; the card can therefore show no number that is not in a result file.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from kit.files import atomic_write_bytes

RESULTS_DIR = "results"
MODEL_META = "model_meta.json"
# mteb's folder for runs of the same model with other settings (smaller or coarser vectors).
EXPERIMENTS_DIR = "experiments"


def stage_results(cache_dir: Path, card_dir: Path, task_files: list[str]) -> list[Path]:
    """Copy the listed result files (relative to ``cache_dir``) and their ``model_meta.json``
    into ``card_dir/results``; stale result files of earlier runs are removed."""
    staged_root = card_dir / RESULTS_DIR
    wanted = {Path(name) for name in task_files}
    wanted |= {name.parent / MODEL_META for name in list(wanted)}
    wanted = {name for name in wanted if (cache_dir / name).is_file()}
    relative = {name.relative_to(RESULTS_DIR) for name in wanted}
    if staged_root.is_dir():
        for path in staged_root.rglob("*"):
            if path.is_file() and path.relative_to(staged_root) not in relative:
                path.unlink()
    staged = []
    for name in sorted(wanted):
        target = staged_root / name.relative_to(RESULTS_DIR)
        atomic_write_bytes(target, (cache_dir / name).read_bytes())
        staged.append(target)
    _remove_empty_folders(staged_root)
    return staged


def _remove_empty_folders(root: Path) -> None:
    if not root.is_dir():
        return
    for folder in sorted((p for p in root.rglob("*") if p.is_dir()), reverse=True):
        if not any(folder.iterdir()):
            shutil.rmtree(folder)


def staged_scores(card_dir: Path) -> dict[str, Any]:
    """Task name -> mteb ``TaskResult`` read from the files staged with the card; the
    compression variants' files (under ``experiments/``) are not the model's own scores."""
    from mteb import TaskResult

    found = {}
    for path in sorted((card_dir / RESULTS_DIR).rglob("*.json")):
        if path.name != MODEL_META and EXPERIMENTS_DIR not in path.parts:
            result = TaskResult.from_disk(path)
            found[result.task_name] = result
    return found
