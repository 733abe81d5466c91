"""A real uvicorn running harken's app on a free 127.0.0.1 port, in a background thread."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from fastapi import FastAPI

import httpx
import uvicorn

from harken import Settings
from harken.server import create_app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_ready(url: str, alive: Callable[[], bool], timeout: float = 60.0) -> None:
    """Return once `url` answers /readyz with 200; RuntimeError if the server dies or takes too long."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or not alive():
            raise RuntimeError(f"the server at {url} did not become ready")
        time.sleep(0.05)


@contextmanager
def live_server(settings: Settings, app: FastAPI | None = None) -> Iterator[str]:
    """Serve `settings` (or `app`, made from them) until the block ends; yields the base URL
    once the default model is ready."""
    port = free_port()
    app = app or create_app(settings)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    wait_until_ready(url, thread.is_alive)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(30)
