"""Stopping a child process we started: politely first, then for sure."""

from __future__ import annotations

import subprocess


def stop(process: subprocess.Popen, grace_s: float = 15) -> None:
    """SIGTERM, and SIGKILL if it has not exited within ``grace_s``; always reaped."""
    process.terminate()
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
