"""A resumable batch run on this machine: a pool of workers over the Service, one job store.

Every output is written to a temporary file in the output folder and renamed into place, and
only then marked done; SIGINT stops taking new inputs and lets running ones finish. Rerunning
the same command skips finished inputs and retries failed ones up to `max_attempts`. A manifest
row's own task and options (see inputs.py) are laid over the command's for that row only.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from harken.audio import AudioSource
from harken.batch.inputs import TASK_OPTIONS, TASKS, BatchInputs, BatchRow, output_name
from harken.batch.jobstore import Item, JobStore, Key
from harken.diarization import DiarizeOptions, rttm
from harken.errors import HarkenError, InvalidOptionError
from harken.files import write_atomic
from harken.formats import get_writer, needs_speakers
from harken.service import Service

__all__ = ["BatchSpec", "BatchProgress", "run_batch", "row_spec", "default_format", "STORE_NAME", "SUMMARY_NAME"]

STORE_NAME = ".harken-batch.sqlite"
SUMMARY_NAME = "summary.jsonl"
_PART = ".part"  # suffix of an output still being written; a killed run leaves these behind
DIARIZE_FORMATS = ("rttm", "json")


@dataclass(frozen=True)
class BatchSpec:
    task: str = "transcribe"
    model: str | None = None
    format: str = "json"
    options: dict[str, Any] = field(default_factory=dict)  # question, schema, language, num_speakers, ...
    workers: int = 1
    max_attempts: int = 3

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise InvalidOptionError(f"task must be one of {', '.join(TASKS)}, not {self.task!r}", param="task")
        if self.task == "diarize":  # turns, not a transcript: the transcript writers do not apply
            if self.format not in DIARIZE_FORMATS:
                raise InvalidOptionError(f"diarize writes {' or '.join(DIARIZE_FORMATS)}, not {self.format!r}", param="format")
            DiarizeOptions.build(**self.options)  # a bad speaker count stops the run, not each input
            return
        if self.task in ("caption", "ask", "analyze") and self.format not in ("json", "txt"):
            raise InvalidOptionError(f"{self.task} writes json or txt, not {self.format!r}", param="format")
        get_writer(self.format)
        if self.task == "ask" and not self.options.get("question"):
            raise InvalidOptionError("ask needs a question", param="question")


def default_format(task: str) -> str:
    """The format when none is asked for: RTTM for diarization (what scoring tools read), else JSON."""
    return "rttm" if task == "diarize" else "json"


@dataclass
class BatchProgress:
    total: int
    skipped: int = 0
    done: int = 0
    failed: int = 0
    audio_s: float = 0.0
    inference_s: float = 0.0
    failed_overall: int = 0  # inputs whose last attempt, in this run or an earlier one, failed


def run_batch(
    service: Service, inputs: BatchInputs, output: Path, spec: BatchSpec, *,
    stop: threading.Event | None = None, on_progress: Callable[[BatchProgress, Item | None], None] | None = None,
    work: Callable[[Item], tuple[bytes, float, float]] | None = None,
    read: Callable[[str], AudioSource] | None = None,
) -> BatchProgress:
    """Run (or resume) the batch; returns the counts. `work` replaces local processing (Ray);
    `read` opens an input (default: the path as it is). Inputs left when `stop` is set stay
    pending for the next run."""
    if output.exists() and not output.is_dir():
        raise InvalidOptionError(f"--output {output} exists and is not a folder", param="output")
    output.mkdir(parents=True, exist_ok=True)
    for stray in output.glob(f".*{_PART}"):  # what a killed run was writing: never a finished output
        stray.unlink(missing_ok=True)
    store = JobStore(output / STORE_NAME)
    try:
        earlier = store.settings({"task": spec.task, "model": spec.model, "format": spec.format, "options": spec.options})
        if earlier is not None:
            raise InvalidOptionError(
                f"{output} holds a batch run with other settings ({json.dumps(earlier)}); use another --output folder",
                param="output",
            )
        keys = list(dict.fromkeys(_key(spec, row) for row in inputs.rows))  # rows that come to the same work: one item
        store.add(keys, output_name)
        todo = store.todo(keys, spec.max_attempts)
        progress = BatchProgress(total=len(keys), skipped=len(keys) - len(todo))
        if on_progress:
            on_progress(progress, None)
        process = work or (lambda item: _process(service, spec, item, read(item.input) if read else item.input))
        stop = stop or threading.Event()
        with ThreadPoolExecutor(max(1, spec.workers)) as pool:
            pending: dict[Future, Item] = {}
            queue = list(todo)
            while queue or pending:
                while queue and len(pending) < spec.workers and not stop.is_set():
                    item = queue.pop(0)
                    store.start(item)
                    pending[pool.submit(process, item)] = item
                if not pending:
                    break
                finished, _ = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                for future in finished:
                    item = pending.pop(future)
                    _settle(store, output, spec, item, future, progress)
                    if on_progress:
                        on_progress(progress, item)
        _write_summary(store, output)
        progress.failed_overall = sum(i.status == "failed" for i in store.items())
        return progress
    finally:
        store.close()


def _settle(store: JobStore, output: Path, spec: BatchSpec, item: Item, future: Future, progress: BatchProgress) -> None:
    try:
        data, audio_s, inference_s = future.result()
    except HarkenError as exc:
        store.failed(item, exc.message)
        progress.failed += 1
        return
    except Exception as exc:  # a bug in one input must not lose the others' work
        store.failed(item, f"internal error: {type(exc).__name__}: {exc}")
        progress.failed += 1
        return
    write_atomic(output / f"{item.output}.{_extension(spec.format)}", data, durable=True, suffix=_PART)
    store.done(item, audio_s, inference_s)
    progress.done += 1
    progress.audio_s += audio_s
    progress.inference_s += inference_s


def _extension(fmt: str) -> str:
    return "rttm" if fmt == "rttm" else get_writer(fmt).extension


def row_spec(spec: BatchSpec, work: str) -> BatchSpec:
    """The spec one item runs under: the command's, with the row's own task and options over it
    (checked again here, so a row that asks without a question fails with that message)."""
    fields = json.loads(work) if work else {}
    if not fields:
        return spec
    task = fields.get("task", spec.task)
    options = dict(spec.options) if task == spec.task else {}  # the command's options are for its own task
    options.update({k: v for k, v in fields.items() if k != "task"})
    return replace(spec, task=task, options=options)


def _key(spec: BatchSpec, row: BatchRow) -> Key:
    """(input, work) with only what differs from the command left in the work: a row that says
    the command's own task, or a language the command's task does not take, is the command's work."""
    fields = row.fields
    task = fields.get("task", spec.task)
    if task not in TASKS:  # BatchSpec says why when the item runs
        return (row.path, row.work)
    own = {k: v for k, v in fields.items() if k in TASK_OPTIONS[task] and not (task == spec.task and spec.options.get(k) == v)}
    if task != spec.task:
        own["task"] = task
    return (row.path, json.dumps(own, sort_keys=True) if own else "")


def _process(service: Service, spec: BatchSpec, item: Item, source: AudioSource) -> tuple[bytes, float, float]:
    spec = row_spec(spec, item.work)
    opts = dict(spec.options)
    if spec.task in ("transcribe", "translate"):
        run = service.translate if spec.task == "translate" else service.transcribe
        if spec.task == "transcribe" and needs_speakers(spec.format):
            opts["diarize"] = True
        t = run(source, model=spec.model, **opts)
        return get_writer(spec.format).render(t).encode(), t.duration, t.timings.inference_s
    if spec.task == "diarize":
        d = service.diarize(source, model=spec.model, **opts)
        # The RTTM's file id is the output's name, so the file and the recording it names agree.
        text = rttm(d, item.output or Path(item.input).stem) if spec.format == "rttm" else (
            json.dumps(d.to_dict(), ensure_ascii=False, indent=2) + "\n")
        return text.encode(), d.duration, d.timings.inference_s
    if spec.task == "ask":
        question = opts.pop("question")
        r = service.ask(source, question, model=spec.model, **opts)
    elif spec.task == "caption":
        r = service.caption(source, model=spec.model, **opts)
    else:
        schema = opts.pop("schema", "tone")
        r = service.analyze(source, schema, model=spec.model, **opts)
    body = json.dumps({"file": item.input, **r.to_dict()}, ensure_ascii=False, indent=2) + "\n" if spec.format == "json" else r.text + "\n"
    return body.encode(), r.timings.audio_s, r.timings.inference_s


def _write_summary(store: JobStore, output: Path) -> None:
    lines = [
        json.dumps({"input": i.input, "work": json.loads(i.work) if i.work else None, "output": i.output,
                    "status": i.status, "attempts": i.attempts, "error": i.error, "audio_s": i.audio_s,
                    "elapsed_s": i.elapsed_s}, ensure_ascii=False)
        for i in store.items()
    ]
    write_atomic(output / SUMMARY_NAME, "\n".join(lines) + "\n", durable=True, suffix=_PART)


