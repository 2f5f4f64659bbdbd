"""A copy of the repository as a user's clone has it: the files git knows, nothing beside it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def repository_files() -> list[str]:
    """Tracked files, plus new ones git does not ignore (so an uncommitted change is tested)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO, capture_output=True, check=True,
    ).stdout.decode()  # fmt: skip
    return sorted(name for name in listed.split("\0") if name and (REPO / name).is_file())


def copy_repository(destination: Path) -> Path:
    """Copy the repository's files into ``destination`` (a folder with nothing beside it)."""
    for name in repository_files():
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, target)
    return destination
