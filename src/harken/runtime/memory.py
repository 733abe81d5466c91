"""glibc's allocator, tuned for a long-running server (both are no-ops elsewhere).

Under a multi-client soak the server's memory grew by a third and stayed: glibc gives threads
that contend for memory arenas of their own (up to 8 per core), and keeps what they free for
reuse. Two arenas, and handing free pages back to the system now and then, keep it flat; a
fixed mmap threshold would too, but made transcription 40 % slower. Measured with
benchmarks/soak.py.
"""

from __future__ import annotations

import ctypes
import os
import sys

__all__ = ["limit_arenas", "trim"]

_M_ARENA_MAX = -8


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt, libc.malloc_trim  # noqa: B018 - present only in glibc
    except (OSError, AttributeError):  # musl, say: nothing to tune
        return None
    return libc


def limit_arenas(arenas: int = 2) -> None:
    """At most `arenas` malloc arenas for the whole process; MALLOC_ARENA_MAX, if set, wins.
    Call it early, before the threads start."""
    libc = _libc()
    if libc is not None and not os.environ.get("MALLOC_ARENA_MAX"):
        libc.mallopt(_M_ARENA_MAX, arenas)


def trim() -> None:
    """Give the system back the free pages of every arena (a few milliseconds)."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
