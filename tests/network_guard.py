"""Make any connection outside loopback fail the test that tried it."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from typing import Any


class NonLoopbackConnection(AssertionError):
    """A test tried to reach the network beyond 127.0.0.0/8 and ::1."""


def is_loopback(address: Any) -> bool:
    if not isinstance(address, tuple):
        return True  # AF_UNIX paths and abstract sockets stay on this machine
    host = address[0]
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def guarded(original: Callable[..., Any]) -> Callable[..., Any]:
    def connect(self: socket.socket, address: Any, *args: Any) -> Any:
        if self.family in (socket.AF_INET, socket.AF_INET6) and not is_loopback(address):
            raise NonLoopbackConnection(f"test tried to connect to {address!r}")
        return original(self, address, *args)

    return connect
