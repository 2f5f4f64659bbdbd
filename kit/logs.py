"""Keep secrets out of anything the kit prints."""

from __future__ import annotations

import os


def redact(text: str, *env_names: str) -> str:
    """Replace the values of the named environment variables (keys, tokens) in ``text``."""
    for env_name in env_names:
        secret = os.environ.get(env_name)
        if secret:
            text = text.replace(secret, "***")
    return text
