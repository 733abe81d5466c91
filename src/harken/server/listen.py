"""Check, before anything starts, that `harken serve` can listen where it was asked to.

uvicorn reports a busy port only after the app's startup, as one log record among many, and
exits 3; this check binds the same addresses the same way first and fails with one line.
"""

from __future__ import annotations

import errno
import socket

from harken.errors import InvalidOptionError

__all__ = ["check_can_listen"]


def check_can_listen(host: str, port: int) -> None:
    """Bind (and release) every address asyncio's create_server would for `host`:`port`, with
    SO_REUSEADDR as it sets it; InvalidOptionError with the cause and the fix if one fails."""
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, socket.gaierror) else str(exc)
        raise InvalidOptionError(f"cannot listen on {where}: unknown host ({reason}; choose --host)", param="host") from None
    except OverflowError:
        raise InvalidOptionError(f"cannot listen on {where}: no such port (0 to 65535; choose --port)", param="port") from None
    for family, kind, proto, _, address in dict.fromkeys(infos):
        with socket.socket(family, kind, proto) as sock:
            # Without SO_REUSEADDR a port that a closed connection still holds in TIME_WAIT would
            # look busy here and be free to uvicorn; with it, only a live listener blocks the bind.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                raise InvalidOptionError(f"cannot listen on {where}: {_why(exc)}", param=_param(exc)) from None


def _why(exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return "address already in use (another server? choose --port)"
    if exc.errno == errno.EACCES:
        return "permission denied (ports below 1024 need privileges; choose --port above 1024)"
    if exc.errno == errno.EADDRNOTAVAIL:
        return "no such address on this machine (choose --host, e.g. 127.0.0.1 or 0.0.0.0)"
    return f"{exc.strerror or exc} (choose another --host or --port)"


def _param(exc: OSError) -> str:
    return "host" if exc.errno == errno.EADDRNOTAVAIL else "port"
