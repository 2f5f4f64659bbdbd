"""Loopback ports for the servers the kit starts (llama.cpp, rendezvous, tests)."""

from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago; the caller binds it straight away."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]
