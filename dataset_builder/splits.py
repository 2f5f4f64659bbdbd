"""Deterministic train/validation split by task definition, so validation holds unseen tasks.

Asymmetric types group records by their (normalized) task definition; symmetric types (STS,
bitext) share one fixed instruction, so each record is its own group. Per task type, the groups
are ranked by a hash of their key and the first ``fraction`` of them go to validation: the
split depends only on the input, never on the order of the lines or on a random state. A key
chosen in one task type is held out in every type, so no instruction leaks into train.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

if TYPE_CHECKING:
    from dataset_builder.raw_run import RunScan


def validation_count(groups: int, fraction: float) -> int:
    """About ``fraction`` of the groups; at least one and never all of them when there are two."""
    if fraction <= 0 or groups < 2:
        return 0
    return min(max(round(fraction * groups), 1), groups - 1)


def validation_keys(scan: RunScan, fraction: float) -> pa.Array:
    """The split keys (uint64) whose records form the validation split."""
    if fraction not in scan.validation_keys:
        chosen = []
        for code in np.unique(scan.type_codes):
            keys = np.unique(scan.group_keys[scan.type_codes == code])  # sorted by hash
            chosen.append(keys[: validation_count(len(keys), fraction)])
        merged = np.unique(np.concatenate(chosen)) if chosen else np.zeros(0, np.uint64)
        scan.validation_keys[fraction] = pa.array(merged, pa.uint64())
    return scan.validation_keys[fraction]


def in_validation(scan: RunScan, fraction: float) -> np.ndarray:
    """One flag per accepted record, in raw order."""
    keys = validation_keys(scan, fraction).to_numpy()
    return np.isin(scan.group_keys, keys)
