"""Writes that a reader can trust, and content hashes.

Every file that a later step trusts is written to a temporary name in the same folder and
renamed over the target, so a kill leaves either the old file or the new one, never half of
one; the temporary name starts with a dot so that no allow-list publishes it.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

TEMP_PREFIX = ".tmp-"


def atomic_write_bytes(path: Path, data: bytes, mode: int = 0o644) -> Path:
    """Replace ``path`` with ``data`` in one rename, after the bytes are on disk."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f"{TEMP_PREFIX}{path.name}-")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, value: Any) -> Path:
    """Sorted keys and a final newline, so equal values give equal bytes."""
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    return atomic_write_text(path, text)


def read_json_object(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``; ``None`` when it is missing, torn or not an object."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def sha256_file(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def digest_files(root: Path, paths: Iterable[Path], extra: str = "") -> str:
    """One SHA-256 over the names (relative to ``root``) and contents of ``paths``."""
    digest = hashlib.sha256(extra.encode("utf-8"))
    for path in sorted(paths):
        digest.update(f"\0{path.relative_to(root).as_posix()}\0".encode())
        digest.update(sha256_file(path).encode() if path.is_file() else b"-")
    return digest.hexdigest()


def remove_temporaries(folder: Path) -> list[Path]:
    """Delete what an interrupted atomic write left behind (only our own prefix)."""
    removed = []
    if folder.is_dir():
        for path in folder.rglob(f"{TEMP_PREFIX}*"):
            if path.is_file():
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed
