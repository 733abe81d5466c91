"""What every route shares: the Service, the media policy, metrics, and how a request waits."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import Request, UploadFile

from harken.config import Settings
from harken.errors import RequestTimeoutError
from harken.results import ChatResult, Timings, Transcript
from harken.audio import named_bytes
from harken.server.media import MediaPolicy
from harken.server.observe import AuditInfo, Metrics
from harken.service import Service

__all__ = ["ServerState", "ClientGone", "state_of"]

T = TypeVar("T")

_POLL_S = 0.25


class ClientGone(Exception):
    """The client hung up while its request waited; its queued work was cancelled."""


@dataclass
class ServerState:
    settings: Settings
    service: Service
    media: MediaPolicy
    metrics: Metrics
    jobs: Any = None  # a batch.jobs.JobManager, started with the app
    ready: bool = False
    load_error: str | None = None  # why the default model did not load, when it did not
    live_streams: int = 0  # realtime sockets and Wyoming clients open now

    async def run(self, request: Request, work: Awaitable[T]) -> T:
        """Await `work` under the request time limit, cancelling it if the client disconnects."""
        task = asyncio.ensure_future(work)
        deadline = time.monotonic() + self.settings.server.request_timeout_s
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RequestTimeoutError(
                        f"request took longer than {self.settings.server.request_timeout_s:g} s and was stopped"
                    )
                done, _ = await asyncio.wait({task}, timeout=min(_POLL_S, left))
                if done:
                    return task.result()
                if await request.is_disconnected():
                    raise ClientGone()
        finally:
            if not task.done():
                task.cancel()

    async def read_upload(self, upload: UploadFile):
        """The uploaded bytes, named as the client named them; kept on disk only if configured."""
        data = await upload.read()
        keep = self.settings.server.keep_uploads
        if keep is not None and data:
            import hashlib

            keep.mkdir(parents=True, exist_ok=True)
            (keep / hashlib.sha256(data).hexdigest()).write_bytes(data)
        return named_bytes(data, upload.filename)

    def record(self, request: Request, t: Transcript) -> dict[str, str]:
        """Count a transcript for metrics and the audit trail; returns the timing headers."""
        shas = (t.audio_sha256,) if t.audio_sha256 else ()
        return self._record(request, t.model, t.task, t.timings, shas, t.text)

    def record_chat(self, request: Request, r: ChatResult) -> dict[str, str]:
        return self._record(request, r.model, r.task, r.timings, r.audio_sha256, r.text)

    def _record(self, request: Request, model: str, task: str, tm: Timings, shas: tuple[str, ...], text: str) -> dict[str, str]:
        self.metrics.observe(model, task, tm)
        info: AuditInfo | None = request.scope.get("state", {}).get("audit")
        if info is not None:
            info.add(model, shas, tm.audio_s, text)
        return {
            "X-Harken-Inference-S": f"{tm.inference_s:.4f}",
            "X-Harken-Total-S": f"{tm.total_s:.4f}",
            "X-Harken-RTF": f"{tm.rtf:.4f}",
            "X-Harken-Cache-Hit": "true" if tm.cache_hit else "false",
        }


def state_of(request: Request) -> ServerState:
    return request.app.state.harken
