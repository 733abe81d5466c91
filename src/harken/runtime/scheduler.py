"""Per-model workers: a bounded queue in front of each engine, and micro-batching.

Model work never runs on a caller's thread (or the server's event loop). Each loaded model
gets `concurrency` worker threads reading one queue (or as many as the engine can run calls
at once, if more). A worker that picks up a job takes every
queued job with the same options along into one `transcribe_batch` call, up to `max_batch`;
when requests for the model are still being decoded, or fewer are queued than the last batch
held, it waits up to `batch_window_ms` for them, so that clients arriving together are served
together. A full queue refuses new work
at once (QueueFullError, a 503 with Retry-After over HTTP); a job whose caller went away is
dropped before it costs anything.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from harken.engines.base import Engine, SpeechEngine, TranscribeOptions, Watch
from harken.errors import QueueFullError

__all__ = ["Scheduler", "BatchHook"]

BatchHook = Callable[[str, int], None]  # (model name, requests in the engine call), for metrics


@dataclass(eq=False)  # compared by identity: the generated __eq__ would compare sample arrays
class _Job:
    samples: np.ndarray | None
    options: TranscribeOptions | None
    group: str | None  # jobs of one group may share an engine call; None never shares
    call: Callable[[], object] | None = None  # work that is not a transcription (chat)
    watch: Watch | None = None
    future: Future = field(default_factory=Future)


class _Worker:
    def __init__(self, name: str, engine: Engine, owner: Scheduler) -> None:
        self.name, self.engine, self.owner = name, engine, owner
        self.queue: deque[_Job] = deque()
        self.cond = threading.Condition()
        self.closing = False
        self.last_size = 1
        self.threads = [
            threading.Thread(target=self._loop, name=f"harken-{name}-{i}", daemon=True)
            # An engine that runs several calls at once (Whisper's CTranslate2 workers) gets a thread
            # for each, so that requests that cannot share a call (other options, a live stream's
            # own prompt) still use every core.
            for i in range(max(owner.concurrency, getattr(engine, "parallel_calls", 1)))
        ]
        for t in self.threads:
            t.start()

    def submit(self, job: _Job) -> Future:
        with self.cond:
            if self.closing:
                raise QueueFullError(f"model {self.name!r} is shutting down")
            if len(self.queue) >= self.owner.queue_size:
                raise QueueFullError(f"model {self.name!r} is busy ({len(self.queue)} requests queued); retry shortly")
            self.queue.append(job)
            self.cond.notify()
        return job.future

    def close(self, drain: bool = True) -> None:
        with self.cond:
            self.closing = True
            if not drain:
                while self.queue:
                    self.queue.popleft().future.cancel()
            self.cond.notify_all()
        for t in self.threads:
            t.join()

    def _loop(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            self._run(batch)

    def _next_batch(self) -> list[_Job] | None:
        limit = self.owner.max_batch if self.engine.batches else 1
        with self.cond:
            while True:
                while not self.queue:
                    if self.closing:
                        return None
                    self.cond.wait()
                deadline = time.monotonic() + self.owner.batch_window_s
                # Wait briefly for requests still being decoded, and for as many as the last batch
                # held: clients served together tend to come back together.
                while (
                    len(self.queue) < limit
                    and (self.owner.incoming(self.name) > 0 or len(self.queue) < self.last_size)
                    and (left := deadline - time.monotonic()) > 0
                ):
                    self.cond.wait(left)
                if self.queue:  # another worker may have taken everything meanwhile
                    break
            first = self.queue.popleft()
            batch = [first]
            for job in list(self.queue):
                if len(batch) >= limit:
                    break
                if first.group is not None and job.group == first.group:
                    self.queue.remove(job)
                    batch.append(job)
            self.last_size = len(batch)
        return batch

    def _run(self, batch: list[_Job]) -> None:
        live = [job for job in batch if job.future.set_running_or_notify_cancel()]
        try:
            if live and live[0].call is not None:
                live[0].future.set_result(live[0].call())
            elif live:
                if self.owner.on_batch is not None:
                    self.owner.on_batch(self.name, len(live))
                watches = [j.watch for j in live]
                results = self.engine.transcribe_batch(
                    [j.samples for j in live], live[0].options, watches if any(watches) else None
                )
                for job, result in zip(live, results):
                    job.future.set_result(result)
        except BaseException as exc:  # handed to every caller; the worker itself carries on
            for job in live:
                if not job.future.done():
                    job.future.set_exception(exc)


class Scheduler:
    def __init__(
        self,
        *,
        queue_size: int = 64,
        max_batch: int = 8,
        concurrency: int = 1,
        batch_window_ms: float = 50.0,
        on_batch: BatchHook | None = None,
    ) -> None:
        self.queue_size, self.max_batch, self.concurrency = queue_size, max_batch, concurrency
        self.batch_window_s = batch_window_ms / 1000.0
        self.on_batch = on_batch
        self._workers: dict[str, _Worker] = {}
        self._incoming: dict[str, int] = {}
        self._lock = threading.Lock()

    @contextmanager
    def expecting(self, name: str) -> Iterator[None]:
        """Mark a request for `name` as on its way (being decoded), so workers wait for it."""
        with self._lock:
            self._incoming[name] = self._incoming.get(name, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                self._incoming[name] -= 1
            worker = self._workers.get(name)
            if worker is not None:
                with worker.cond:
                    worker.cond.notify_all()

    def incoming(self, name: str) -> int:
        return self._incoming.get(name, 0)

    def submit(
        self, name: str, engine: SpeechEngine, samples: np.ndarray, options: TranscribeOptions,
        watch: Watch | None = None,
    ) -> Future:
        """Queue one clip for `engine`; the Future yields an EngineTranscript."""
        return self._worker(name, engine).submit(_Job(samples, options, options.cache_key(), watch=watch))

    def submit_call(self, name: str, engine: Engine, call: Callable[[], object]) -> Future:
        """Queue other work for `engine` (a chat turn) behind the same queue; never batched."""
        return self._worker(name, engine).submit(_Job(None, None, None, call))

    def _worker(self, name: str, engine: Engine) -> _Worker:
        with self._lock:
            worker = self._workers.get(name)
            if worker is None or worker.engine is not engine:
                if worker is not None:
                    worker.close()
                worker = self._workers[name] = _Worker(name, engine, self)
            return worker

    def forget(self, name: str) -> None:
        """Stop the worker of a model being unloaded, after its queued work."""
        with self._lock:
            worker = self._workers.pop(name, None)
        if worker is not None:
            worker.close()

    def queued(self) -> dict[str, int]:
        return {name: len(w.queue) for name, w in self._workers.items()}

    def close(self, drain: bool = True) -> None:
        """Stop every worker; with `drain`, queued work finishes first."""
        with self._lock:
            workers, self._workers = list(self._workers.values()), {}
        for worker in workers:
            worker.close(drain)
