"""Loopback ports for the servers the kit starts (llama.cpp, rendezvous, tests)."""

from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago; the caller binds it straight away."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def hub_reachable(timeout_s: float = 3.0) -> bool:
    """Registry tasks download their data: skip them, and say so, when no Hub answers."""
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        with socket.create_connection((host, 443), timeout=timeout_s):
            return True
    except OSError:
        return False
