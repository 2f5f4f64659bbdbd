"""The trained model's mteb results, staged with the model and turned into its model-index.

mteb's ``ResultCache`` keeps one JSON file per task under
``results/<org>__<model>/<revision>/`` with a ``model_meta.json`` beside them: the layout the
mteb results repository takes. The same files, cut to the splits and subsets each task runs
(a cached file may hold more), are written into the card folder, so they are published in
the model repo beside the card, and the card's model-index is read back from those copies;
the card can therefore show no number that is not in a result file.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from kit.files import TEMP_PREFIX, atomic_write_bytes, atomic_write_json

RESULTS_DIR = "results"
MODEL_META = "model_meta.json"
# mteb's folder for runs of the same model with other settings (smaller or coarser vectors).
EXPERIMENTS_DIR = "experiments"


def _filtered(path: Path, task: Any) -> bytes:
    """A result file holding only the splits and subsets ``task`` runs, in mteb's format."""
    from mteb import TaskResult

    result = TaskResult.from_disk(path).validate_and_filter_scores(task)
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / path.name
        result.to_disk(target)
        return target.read_bytes()


def stage_results(cache_dir: Path, card_dir: Path, task_files: dict[str, Any]) -> list[Path]:
    """Write the listed result files (relative to ``cache_dir``, each with its mteb task),
    cut to the task's splits and subsets, and their ``model_meta.json`` into
    ``card_dir/results``; stale result files of earlier runs are removed."""
    staged_root = card_dir / RESULTS_DIR
    tasks = {Path(name): task for name, task in task_files.items()}
    wanted = set(tasks)
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
        source = cache_dir / name
        data = _filtered(source, tasks[name]) if name in tasks else source.read_bytes()
        atomic_write_bytes(target, data)
        staged.append(target)
    _remove_empty_folders(staged_root)
    return staged


def adopt_revision(cache_dir: Path, model_name: str, old: str, new: str) -> bool:
    """Label the results cached under revision ``old`` with ``new`` too (the same model files,
    now known by their Hub commit), so they are reused rather than computed again."""
    folder = cache_dir / RESULTS_DIR / model_name.replace("/", "__").replace(" ", "_")
    if not (folder / old).is_dir() or (folder / new).exists():
        return False
    with tempfile.TemporaryDirectory(prefix=TEMP_PREFIX, dir=folder) as tmp:
        copy = Path(shutil.copytree(folder / old, Path(tmp) / new))
        for meta in copy.rglob(MODEL_META):
            data = json.loads(meta.read_text(encoding="utf-8"))
            atomic_write_json(meta, {**data, "revision": new})
        copy.rename(folder / new)  # one rename: a kill leaves no half-labelled folder
    return True


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
