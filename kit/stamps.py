"""Per-section stamps for make: ``python3 -m kit.stamps CONFIG STAMP_DIR``.

Writes ``STAMP_DIR/<section>.sha256`` holding the digest of each resolved config section,
rewriting a stamp only when its digest changed. The Makefile makes each stage depend on the
stamps of the sections that stage reads, so editing ``[training]`` retrains, editing
``[evaluation]`` re-evaluates, and a config that is merely touched reruns nothing. Standard
library only: make calls it before the virtual environment exists.
"""

from __future__ import annotations

import sys
from pathlib import Path

from kit.config import SECTIONS, ConfigError, load_config, section_digest


def refresh(config_path: str, stamp_dir: Path) -> list[str]:
    """Bring the stamps up to date; return the sections whose stamp changed."""
    config = load_config(config_path)
    stamp_dir.mkdir(parents=True, exist_ok=True)
    changed = []
    for name in SECTIONS:
        stamp = stamp_dir / f"{name}.sha256"
        digest = section_digest(config, name) + "\n"
        if not stamp.is_file() or stamp.read_text(encoding="utf-8") != digest:
            stamp.write_text(digest, encoding="utf-8")
            changed.append(name)
    return changed


if __name__ == "__main__":
    try:
        refresh(sys.argv[1], Path(sys.argv[2]))
    except (ConfigError, OSError):
        # A bad config is reported by the stage that make runs next, as one line and exit 2.
        pass
