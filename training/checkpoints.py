"""Which checkpoint a resumed run may trust.

The trainer writes a checkpoint folder file by file and ``trainer_state.json`` last, so a
kill can leave a newer folder half written (and its clean-up of an older one half done). A
checkpoint is complete when its state file parses and names its own step and its adapter
weights read back; the newest complete one is resumed from and the broken ones are removed
first, so the trainer's own rotation never counts them. Checkpoints resume only the run
that wrote them: the folder carries that run's provenance, and checkpoints of other inputs
or settings are removed rather than resumed (or exported) under the new card.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from kit.files import read_json_object
from kit.provenance import Provenance, read_provenance, write_provenance
from kit.staleness import why_stale
from training.adapter import ADAPTER_FILE

log = logging.getLogger(__name__)
PREFIX = "checkpoint-"


def _step(folder: Path) -> int:
    suffix = folder.name.removeprefix(PREFIX)
    return int(suffix) if suffix.isdigit() else -1


def is_complete(folder: Path) -> bool:
    state = read_json_object(folder / "trainer_state.json")
    if state is None or state.get("global_step") != _step(folder):
        return False
    adapter = folder / ADAPTER_FILE
    if not adapter.is_file():
        return False
    try:
        from safetensors import safe_open

        with safe_open(str(adapter), framework="pt") as weights:
            for name in weights.keys():
                weights.get_tensor(name)
    except Exception:  # noqa: BLE001 - any read error means a file cut short
        return False
    return True


def keep_only_this_runs_state(folder: Path, provenance: Provenance) -> None:
    """Remove checkpoints and prepared data of another run (other code, a changed
    ``[training]`` section, dataset or held-out set: the stage's own staleness rule), then
    mark the folder as this run's."""
    state = [p for p in folder.glob("*") if p.is_dir()]  # none if no folder yet
    reason = why_stale(read_provenance(folder), provenance) if state else None
    if reason:
        if any(p.name.startswith(PREFIX) for p in state):
            log.warning(
                "%s holds checkpoints of another run (%s): removed, training starts from step 0",
                folder, reason,
            )  # fmt: skip
        for path in state:
            shutil.rmtree(path, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    write_provenance(folder, provenance)


def last_complete_checkpoint(folder: Path) -> str | None:
    """The newest complete checkpoint under ``folder``; incomplete ones are deleted."""
    if not folder.is_dir():
        return None
    found = sorted((p for p in folder.glob(f"{PREFIX}*") if p.is_dir() and _step(p) >= 0),
                   key=_step, reverse=True)  # fmt: skip
    resume = None
    for checkpoint in found:
        if resume is None and is_complete(checkpoint):
            resume = str(checkpoint)
        elif resume is None or not is_complete(checkpoint):
            log.warning("%s is incomplete (stopped while being written): removed", checkpoint)
            shutil.rmtree(checkpoint, ignore_errors=True)
    return resume


def is_final(checkpoint: str, planned_steps: int) -> bool:
    """Whether ``checkpoint`` holds the run's last step (``planned_steps``, or when that is 0
    the step count the run planned when it wrote the checkpoint).

    The trainer, resumed from its own last step, would still take one more step before it
    checks the limit, so such a checkpoint is restored instead of resumed from. DeepSpeed
    checkpoints (the engine's ``latest`` beside the adapter) are always resumed: the engine
    restores them, and only once it has prepared the model.
    """
    folder = Path(checkpoint)
    state = read_json_object(folder / "trainer_state.json") or {}
    planned = planned_steps or int(state.get("max_steps") or 0)
    deepspeed = (folder / "latest").is_file()
    return not deepspeed and planned > 0 and int(state.get("global_step") or 0) >= planned
