"""A minimal TOML writer for test configs (tomllib reads but does not write)."""

from __future__ import annotations

import json
import re
from typing import Any

BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _key(key: str) -> str:
    """A bare key as it is; any other (``"short_long.num_words"``) quoted, not nested."""
    return key if BARE_KEY.fullmatch(key) else json.dumps(key, ensure_ascii=False)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def dump_toml(sections: dict[str, dict[str, Any]]) -> str:
    lines: list[str] = []
    for name, body in sections.items():
        lines.append(f"[{name}]")
        lines.extend(f"{_key(key)} = {_value(value)}" for key, value in body.items())
        lines.append("")
    return "\n".join(lines)
