"""Batch across a Ray cluster: a pool of actors, each holding one loaded model.

The driver keeps the job store exactly as a local run does (run_batch with `work` swapped):
it hands an input to an idle actor, receives the encoded output back, and writes it atomically
into the output folder itself, so resume semantics do not depend on where the work ran. The
actors read the inputs themselves: the paths must be visible to every node (shared storage).
"""

from __future__ import annotations

import os
import queue
from collections.abc import Callable

from harken.batch.jobstore import Item
from harken.batch.local import BatchSpec
from harken.config import Settings
from harken.errors import HarkenError, require

__all__ = ["ray_work"]


def ray_work(spec: BatchSpec, settings: Settings, *, address: str | None = None, actors: int | None = None) -> Callable[[Item], tuple[bytes, float, float]]:
    """A `work` function for run_batch that runs each input on a Ray actor."""
    ray = require("ray", "ray", "--ray")
    if not ray.is_initialized():
        import logging

        ray.init(address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True,
                 logging_level=logging.WARNING)

    @ray.remote
    class _Worker:
        def __init__(self, settings_json: str, spec: BatchSpec) -> None:
            from harken.service import Service

            self.service = Service(Settings.model_validate_json(settings_json))
            self.spec = spec
            model = spec.model
            if model is None and spec.task == "diarize":  # the default model transcribes; this task needs the diarizer
                model = self.service.settings.default_diarizer
            self.service.registry.load(model)  # one loaded model per actor, loaded once

        def process(self, path: str, work: str = "", output: str = ""):
            from harken.batch.local import _process

            try:
                # work: a manifest row's own task/options; output: the name an RTTM gives its recording
                item = Item(path, 0, output, "running", 0, None, None, None, work)
                return "ok", _process(self.service, self.spec, item, path)
            except HarkenError as exc:  # carried back as data: Ray would wrap the exception type
                return "error", (type(exc).__name__, exc.message)

    count = actors or spec.workers
    # Ray schedules an actor on one CPU; unless configured, its engine keeps to one core.
    per_actor = settings.model_copy(update={"workers": settings.workers or 1, "cpu_threads": settings.cpu_threads or 1})
    # Ray sets OMP_NUM_THREADS=1 in its workers, and CTranslate2's int8 kernels then take another
    # path on CPUs without AVX-512 (a word comes out differently). Actors get this process's value,
    # or OpenMP's own default (every core), so a Ray batch writes what a local one writes.
    omp = os.environ.get("OMP_NUM_THREADS") or str(os.cpu_count() or 1)
    actor = _Worker.options(runtime_env={"env_vars": {"OMP_NUM_THREADS": omp}})
    pool: queue.Queue = queue.Queue()
    for _ in range(count):
        pool.put(actor.remote(per_actor.model_dump_json(), spec))

    def work(item: Item) -> tuple[bytes, float, float]:
        actor = pool.get()
        try:
            status, value = ray.get(actor.process.remote(item.input, item.work, item.output))
        finally:
            pool.put(actor)
        if status == "error":
            raise HarkenError(value[1])
        return value

    return work
