"""Async jobs for the server: batch runs in the background that survive restarts.

A job is a row in `jobs.sqlite` plus a folder that is an ordinary batch output folder (its own
job store, outputs and summary), so a job resumes exactly as `harken batch` does. On start-up
every job left queued or running is started again. When a job ends, its webhook (if any) gets
a POST whose body is signed with HMAC-SHA256, retried with backoff.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from harken.audio import AudioSource, named_bytes
from harken.batch.inputs import BatchInputs
from harken.batch.jobstore import JobStore
from harken.batch.local import STORE_NAME, BatchSpec, run_batch
from harken.errors import AudioNotFoundError, ForbiddenError, InvalidOptionError, JobNotFoundError
from harken.files import PathGuard, describe_os_error
from harken.service import Service

__all__ = ["JobManager", "JobInfo", "sign"]

log = logging.getLogger("harken.jobs")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, status TEXT NOT NULL, spec TEXT NOT NULL, inputs TEXT NOT NULL,
    webhook_url TEXT, created REAL NOT NULL, updated REAL NOT NULL
);
"""


@dataclass(frozen=True)
class JobInfo:
    id: str
    status: str  # queued | running | done | cancelled
    total: int
    done: int
    failed: int
    created: float
    updated: float

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "object": "job", **{k: v for k, v in self.__dict__.items() if k != "id"}}


def sign(secret: str, body: bytes, timestamp: str) -> str:
    """The webhook signature: hex HMAC-SHA256 of `timestamp.body`."""
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


class JobManager:
    def __init__(
        self, service: Service, root: Path, *, guard: PathGuard, webhook_hosts: list[str], webhook_secret: str | None
    ) -> None:
        """Inputs are opened through `guard` when a job gets to them, as well as checked on submit."""
        self.service, self.root, self.guard = service, root, guard
        self.webhook_hosts = {h.lower() for h in webhook_hosts}
        self.webhook_secret = webhook_secret
        root.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(root / "jobs.sqlite", check_same_thread=False, isolation_level=None, timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(_SCHEMA)
        self._lock = threading.Lock()
        self._stops: dict[str, threading.Event] = {}
        self._threads: dict[str, threading.Thread] = {}

    def resume(self) -> None:
        """Start again every job a stop or crash left unfinished."""
        for (job_id,) in self._query("SELECT id FROM jobs WHERE status IN ('queued', 'running') ORDER BY created"):
            self._start(job_id)

    def submit(self, inputs: list[tuple[str, str]], spec: BatchSpec, webhook_url: str | None) -> JobInfo:
        """`inputs` pairs what the client named with the real path it was checked to be."""
        if webhook_url is not None:
            self._check_webhook(webhook_url)
        # Two names for one file (a path and its file:// URL) are one input, run once.
        first: dict[str, tuple[str, str]] = {}
        for given, real in inputs:
            first.setdefault(real, (given, real))
        inputs = list(first.values())
        job_id = "job_" + uuid.uuid4().hex[:20]
        now = time.time()
        spec_json = json.dumps({"task": spec.task, "model": spec.model, "format": spec.format,
                                "options": spec.options, "workers": spec.workers, "max_attempts": spec.max_attempts})
        with self._lock:
            self.db.execute("INSERT INTO jobs VALUES (?, 'queued', ?, ?, ?, ?, ?)",
                            (job_id, spec_json, json.dumps(inputs), webhook_url, now, now))
        self._start(job_id)
        return self.info(job_id)

    def info(self, job_id: str) -> JobInfo:
        rows = self._query("SELECT status, inputs, created, updated FROM jobs WHERE id = ?", (job_id,))
        if not rows:
            raise JobNotFoundError(f"no job {job_id!r}", param="id")
        status, inputs, created, updated = rows[0]
        items = self._items(job_id)
        done = sum(i.status == "done" for i in items)
        failed = sum(i.status == "failed" for i in items)
        return JobInfo(job_id, status, len(json.loads(inputs)), done, failed, created, updated)

    def results(self, job_id: str):
        """One JSON line per input, in input order, with the output parsed."""
        self.info(job_id)
        names = {real: given for given, real in json.loads(self._query("SELECT inputs FROM jobs WHERE id = ?", (job_id,))[0][0])}
        for item in self._items(job_id):
            row: dict[str, Any] = {"input": names.get(item.input, item.input), "status": item.status, "error": item.error}
            out = self.root / job_id / f"{item.output}.json"
            if item.status == "done" and out.is_file():
                row["result"] = json.loads(out.read_text())
                row["result"].pop("file", None)  # a server path
            yield json.dumps(row, ensure_ascii=False) + "\n"

    def cancel(self, job_id: str) -> JobInfo:
        info = self.info(job_id)
        if info.status in ("queued", "running"):
            self._set(job_id, "cancelled")
            if stop := self._stops.get(job_id):
                stop.set()
        return self.info(job_id)

    def close(self) -> None:
        """Stop running jobs after their inputs in flight; they stay queued and resume on restart."""
        for stop in list(self._stops.values()):
            stop.set()
        for thread in list(self._threads.values()):
            thread.join(60)
        self.db.close()

    # --- internals ---------------------------------------------------------------------------

    def _start(self, job_id: str) -> None:
        stop = self._stops[job_id] = threading.Event()
        thread = threading.Thread(target=self._run, args=(job_id, stop), name=f"harken-{job_id}", daemon=True)
        self._threads[job_id] = thread
        thread.start()

    def _run(self, job_id: str, stop: threading.Event) -> None:
        spec_json, inputs_json = self._query("SELECT spec, inputs FROM jobs WHERE id = ?", (job_id,))[0]
        spec = BatchSpec(**json.loads(spec_json))
        inputs = BatchInputs.of([real for _, real in json.loads(inputs_json)])
        self._set(job_id, "running")
        try:
            run_batch(self.service, inputs, self.root / job_id, spec, stop=stop, read=self._read)
        except Exception:
            log.exception("job %s broke off; it stays queued for the next start", job_id)
            self._set(job_id, "queued")
            return
        finally:
            self._stops.pop(job_id, None)
            self._threads.pop(job_id, None)
        status = self._query("SELECT status FROM jobs WHERE id = ?", (job_id,))[0][0]
        if status == "cancelled":
            self._notify(job_id)
        elif stop.is_set():  # the server is stopping: resume on the next start
            self._set(job_id, "queued")
        else:
            self._set(job_id, "done")
            self._notify(job_id)

    def _read(self, path: str) -> AudioSource:
        try:
            return named_bytes(self.guard.read(path), Path(path).name)
        except OSError as exc:
            raise AudioNotFoundError(f"{Path(path).name}: {describe_os_error(exc)}") from None

    def _items(self, job_id: str):
        path = self.root / job_id / STORE_NAME
        if not path.is_file():
            return []
        store = JobStore(path)
        try:
            return store.items()
        finally:
            store.close()

    def _check_webhook(self, url: str) -> None:
        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise InvalidOptionError("webhook_url must be an http(s) URL", param="webhook_url")
        if parsed.hostname.lower() not in self.webhook_hosts:
            raise ForbiddenError(f"webhook host {parsed.hostname!r} is not allowed on this server", param="webhook_url")
        if not self.webhook_secret:
            raise InvalidOptionError("this server has no webhook_secret to sign webhooks with", param="webhook_url")

    def _notify(self, job_id: str, attempts: int = 4) -> None:
        import httpx

        url = self._query("SELECT webhook_url FROM jobs WHERE id = ?", (job_id,))[0][0]
        if not url:
            return
        body = json.dumps(self.info(job_id).to_dict()).encode()
        timestamp = str(int(time.time()))
        headers = {"Content-Type": "application/json", "X-Harken-Timestamp": timestamp,
                   "X-Harken-Signature": "sha256=" + sign(self.webhook_secret or "", body, timestamp)}
        for attempt in range(attempts):
            try:
                if httpx.post(url, content=body, headers=headers, timeout=10, follow_redirects=False).status_code < 300:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5 * 2**attempt)
        log.warning("webhook for %s was not accepted after %d tries", job_id, attempts)

    def _set(self, job_id: str, status: str) -> None:
        with self._lock:
            self.db.execute("UPDATE jobs SET status = ?, updated = ? WHERE id = ?", (status, time.time(), job_id))

    def _query(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            return self.db.execute(sql, args).fetchall()
