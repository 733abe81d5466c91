"""Prometheus metrics, JSON logs and the audit trail.

Routes fill in an `AuditInfo` on the request (model, audio hash and seconds, text); the
middleware adds the key id, status and latency when the response is done, counts the request
and writes one audit line. Queue depth and model load times are read live at scrape time.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from harken.results import Timings
from harken.service import Service

__all__ = ["AuditInfo", "AuditLog", "Metrics", "ObserveMiddleware", "setup_json_logging"]


@dataclass
class AuditInfo:
    """What a request did, filled in by its route (several entries for a multi-file request)."""

    key_id: str | None = None
    model: str | None = None
    audio_sha256: list[str] = field(default_factory=list)
    audio_s: float = 0.0
    text: list[str] = field(default_factory=list)

    def add(self, model: str, audio_sha256: tuple[str, ...], audio_s: float, text: str) -> None:
        self.model = model
        self.audio_sha256 += audio_sha256
        self.audio_s += audio_s
        self.text.append(text)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("harken_requests", "HTTP requests", ["route", "method", "status"], registry=r)
        self.latency = Histogram(
            "harken_request_duration_seconds", "HTTP request latency", ["route"], registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
        )
        self.audio = Counter("harken_audio_seconds", "Audio processed, in seconds", ["model", "task"], registry=r)
        self.rtf = Histogram(
            "harken_real_time_factor", "Inference time over audio time", ["model"], registry=r,
            buckets=(0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0),
        )
        self.cache_hits = Counter("harken_cache_hits", "Results served from the cache", ["model"], registry=r)
        self.cache_misses = Counter("harken_cache_misses", "Results computed", ["model"], registry=r)
        self.batch = Histogram(
            "harken_batch_size", "Requests per engine call", ["model"], registry=r, buckets=(1, 2, 4, 8, 16, 32, 64)
        )

    def watch(self, service: Service) -> None:
        """Report the service's queue depths and model load times at every scrape."""
        self.registry.register(_Live(service))

    def observe(self, model: str, task: str, timings: Timings) -> None:
        self.audio.labels(model, task).inc(timings.audio_s)
        if timings.cache_hit:
            self.cache_hits.labels(model).inc()
        else:
            self.cache_misses.labels(model).inc()
            if timings.audio_s:
                self.rtf.labels(model).observe(timings.rtf)

    def on_batch(self, model: str, size: int) -> None:
        self.batch.labels(model).observe(size)


class _Live:
    """Figures read from the service when Prometheus scrapes."""

    def __init__(self, service: Service) -> None:
        self.service = service

    def collect(self):
        depth = GaugeMetricFamily("harken_queue_depth", "Requests waiting per model", labels=["model"])
        for name, n in self.service.scheduler.queued().items():
            depth.add_metric([name], n)
        load = GaugeMetricFamily("harken_model_load_seconds", "Time the model took to load", labels=["model"])
        for loaded in self.service.registry.loaded():
            load.add_metric([loaded.entry.name], loaded.load_s)
        yield depth
        yield load


class AuditLog:
    """JSON lines: who asked what of which model, on which audio, and how it went. Never the key;
    the text only when configured."""

    def __init__(self, path: Path | None, include_text: bool) -> None:
        self.path, self.include_text = path, include_text
        self._lock = threading.Lock()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, *, route: str, method: str, status: int, latency_s: float, info: AuditInfo) -> None:
        if self.path is None:
            return
        record = {
            "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            "key_id": info.key_id,
            "method": method,
            "route": route,
            "model": info.model,
            "audio_sha256": info.audio_sha256[0] if len(info.audio_sha256) == 1 else info.audio_sha256 or None,
            "audio_s": round(info.audio_s, 3) if info.audio_sha256 else None,
            "status": status,
            "latency_ms": round(latency_s * 1000, 2),
        }
        if self.include_text and info.text:
            record["text"] = info.text[0] if len(info.text) == 1 else info.text
        line = json.dumps(record, ensure_ascii=False) + "\n"
        with self._lock, self.path.open("a", encoding="utf-8") as f:
            f.write(line)


class ObserveMiddleware:
    def __init__(self, app: ASGIApp, *, metrics: Metrics, audit: AuditLog) -> None:
        self.app, self.metrics, self.audit = app, metrics, audit
        self.log = logging.getLogger("harken.access")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        info = AuditInfo()
        scope.setdefault("state", {})["audit"] = info
        start = time.perf_counter()
        status = 500

        async def watching(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watching)
        finally:
            latency = time.perf_counter() - start
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.requests.labels(route, scope["method"], str(status)).inc()
            self.metrics.latency.labels(route).observe(latency)
            self.audit.write(route=route, method=scope["method"], status=status, latency_s=latency, info=info)
            self.log.info(
                "request",
                extra={"route": route, "method": scope["method"], "status": status,
                       "latency_ms": round(latency * 1000, 2), "key_id": info.key_id, "model": info.model},
            )


class _JsonFormatter(logging.Formatter):
    _FIELDS = ("route", "method", "status", "latency_ms", "key_id", "model")

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        out.update({k: getattr(record, k) for k in self._FIELDS if hasattr(record, k)})
        if record.exc_info:
            out["error"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def setup_json_logging(level: str = "info") -> None:
    """harken's loggers (and uvicorn's error log) as JSON lines on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter())
    for name in ("harken", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level.upper())
        logger.propagate = False
