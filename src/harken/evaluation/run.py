"""Run a model over a dataset and score it: one function per task, one report shape."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harken.engines.base import Capability
from harken.audio import AudioSource, named_bytes
from harken.diarization import parse_rttm, rttm
from harken.errors import AudioError, AudioNotFoundError, CapabilityError, ForbiddenError, InvalidOptionError, PayloadTooLargeError
from harken.evaluation import metrics
from harken.evaluation.datasets import DIAR, Dataset, Example, load_dataset, reference_turns, scored_regions
from harken.files import PathGuard, describe_os_error
from harken.results import Timings
from harken.service import Service

__all__ = ["EvalReport", "evaluate", "TASKS"]

TASKS = ("asr", "exact", "lid", "classify", DIAR)
# Which manifest `task` values each evaluation takes; rows without a task are always taken.
_ROWS = {"asr": {"asr"}, "exact": {"asr", "exact"}, "lid": {"lid"}, "classify": {"classify", "sound"}, DIAR: {DIAR}}
TRANSCRIBE_PROMPT = "Transcribe the speech in this audio exactly, and write nothing else."


@dataclass
class EvalReport:
    model: str
    task: str
    dataset: str
    options: dict[str, Any]
    summary: dict[str, Any]
    details: list[dict[str, Any]]
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate(
    dataset: Dataset | str | Path,
    *,
    model: str | None = None,
    task: str = "asr",
    normalizer: str = "english",
    max_new_tokens: int | None = None,
    service: Service | None = None,
    on_clip: Callable[[dict[str, Any]], None] | None = None,
    guard: PathGuard | None = None,
    use_cache: bool = True,
) -> EvalReport:
    """Score `model` on `dataset`; a clip that fails is recorded in its detail, never fatal.
    Clips are opened through `guard` (default: any regular file). A clip answered from the result
    cache is marked `cached` and left out of latency and RTF: its time is the cache's, not the
    model's; `use_cache=False` times every clip. Task `diar` scores the diarizer (default: the
    configured one) by DER against each clip's RTTM, its hypothesis the diarizer's RTTM."""
    if task not in TASKS:
        raise InvalidOptionError(f"task must be one of {', '.join(TASKS)}, not {task!r}", param="task")
    guard = guard or PathGuard()
    data = dataset if isinstance(dataset, Dataset) else load_dataset(dataset, guard=guard)
    examples = [e for e in data.examples if e.task is None or e.task in _ROWS[task]]
    if not examples:
        found = sorted({e.task for e in data.examples if e.task})
        hint = f" (its clips are for task {', '.join(found)})" if found else ""
        raise InvalidOptionError(f"{data.source}: no clips for task {task!r}{hint}", param="task")
    data = Dataset(data.source, examples, data.problems)
    service = service or _default_service()
    diar = metrics.DiarizationScorer() if task == DIAR else None  # before any clip runs: a missing extra stops here
    norm = metrics.normaliser("none" if diar else normalizer)  # speaker labels are not words to normalise
    if diar and model is None:
        model = service.settings.default_diarizer
    loaded = service.registry.load(model)
    predict = _predictor(service, loaded.entry.name, loaded.engine.capabilities, task, data, max_new_tokens,
                         _opener(guard), use_cache)
    details = []
    for example in data.examples:
        detail: dict[str, Any] = {"path": str(example.path), "reference": example.reference}
        try:
            hypothesis, timings = predict(example)
        except (AudioError, CapabilityError, ForbiddenError, PayloadTooLargeError) as exc:
            detail.update(hypothesis=None, error={"type": exc.code, "message": exc.message})
        else:
            detail.update(hypothesis=hypothesis, timings=timings.to_dict(), cached=timings.cache_hit)
            detail.update(_diar_score(diar, example, hypothesis, timings) if diar else _score(task, example, hypothesis, norm))
        details.append(detail)
        if on_clip is not None:
            on_clip(detail)
    options: dict[str, Any] = {"normalizer": normalizer, "max_new_tokens": max_new_tokens, "use_cache": use_cache}
    if diar:
        options = {"collar_s": metrics.COLLAR_S, "skip_overlap": False, "use_cache": use_cache}
    summary = _summary(task, details, norm)
    if diar:
        summary.update(_diar_summary(diar, details))
    return EvalReport(loaded.entry.name, task, data.source, options, summary, details, data.problems)


def _opener(guard: PathGuard) -> Callable[[Example], AudioSource]:
    def open_clip(example: Example) -> AudioSource:
        try:
            return named_bytes(guard.read(example.path), example.path.name)
        except OSError as exc:
            raise AudioNotFoundError(f"{example.path.name}: {describe_os_error(exc)}") from None
    return open_clip


def _predictor(service: Service, model: str, caps: Capability, task: str, data: Dataset, max_new_tokens: int | None,
               clip: Callable[[Example], AudioSource], use_cache: bool):
    if task == DIAR:
        if Capability.DIARIZE not in caps:
            raise CapabilityError(f"model {model!r} cannot tell speakers apart; `harken models` lists the diarizers",
                                  param="model")

        def diarize(example: Example):
            found = service.diarize(clip(example), model=model, use_cache=use_cache)
            return rttm(found, example.path.stem), found.timings
        return diarize
    if task == "lid":
        if Capability.DETECT_LANGUAGE not in caps:
            raise CapabilityError(f"model {model!r} cannot identify languages", param="model")

        def lid(example: Example):
            guess = service.detect_language(clip(example), model=model)
            return guess.language, guess.timings
        return lid
    if task == "classify":
        if Capability.CHAT not in caps:
            raise CapabilityError(f"classify asks an audio-language model; {model!r} is not one", param="model")
        schema = {"type": "object", "properties": {"label": {"enum": sorted({e.reference for e in data.examples})}},
                  "required": ["label"], "additionalProperties": False}

        def classify(example: Example):
            answer = service.analyze(clip(example), schema, model=model, max_new_tokens=max_new_tokens or 64,
                                     use_cache=use_cache)
            return answer.result["label"], answer.timings
        return classify
    if Capability.TRANSCRIBE in caps:
        def transcribe(example: Example):
            t = service.transcribe(clip(example), model=model, max_new_tokens=max_new_tokens, language=example.language,
                                   use_cache=use_cache)
            return t.text, t.timings
        return transcribe
    if Capability.CHAT in caps:
        def ask(example: Example):
            answer = service.ask(clip(example), TRANSCRIBE_PROMPT, model=model, max_new_tokens=max_new_tokens or 256,
                                 use_cache=use_cache)
            return answer.text, answer.timings
        return ask
    raise CapabilityError(f"model {model!r} can neither transcribe nor chat", param="model")


def _score(task: str, example: Example, hypothesis: str, norm) -> dict[str, Any]:
    if task == "asr":
        wer, cer = metrics.wer_cer([norm(example.reference)], [norm(hypothesis)])
        return {"wer": wer, "cer": cer}
    if task == "exact":  # the chosen normaliser applies here as it does to WER
        key = metrics.exact_key(norm)
        return {"match": key(hypothesis) == key(example.reference)}
    return {"correct": hypothesis == example.reference}


def _diar_score(scorer: metrics.DiarizationScorer, example: Example, hypothesis: str, timings: Timings) -> dict[str, Any]:
    """The clip's DER and its parts; the hypothesis is the RTTM the predictor wrote for this clip."""
    found = next(iter(parse_rttm(hypothesis).values()), [])
    score = scorer.score(example.path.stem, reference_turns(example), found, scored_regions(example), timings.audio_s)
    return asdict(score)


def _diar_summary(scorer: metrics.DiarizationScorer, details: list[dict[str, Any]]) -> dict[str, Any]:
    """Pooled DER and parts over the clips scored, and how often the diarizer found as many
    speakers as the reference has; None when no clip was scored, as a zero would read as perfect."""
    done = [d for d in details if d.get("hypothesis") is not None]
    if not done:
        return {"der": None, "missed": None, "false_alarm": None, "speaker_confusion": None, "speaker_count_accuracy": None}
    right = sum(d["reference_speakers"] == d["found_speakers"] for d in done)
    return {**asdict(scorer.pooled()), "speaker_count_accuracy": right / len(done)}


def _summary(task: str, details: list[dict[str, Any]], norm) -> dict[str, Any]:
    done = [d for d in details if d.get("hypothesis") is not None]
    timed = [d for d in done if not d["cached"]]
    summary: dict[str, Any] = {"count": len(details), "scored": len(done), "failed": len(details) - len(done),
                               "cached": len(done) - len(timed)}
    summary.update(metrics.latency([d["timings"]["total_s"] for d in timed], [d["timings"]["audio_s"] for d in timed]))
    if task in ("asr", "exact"):
        wer, cer = metrics.wer_cer([norm(d["reference"]) for d in done], [norm(d["hypothesis"]) for d in done])
        summary.update(wer=wer, cer=cer)
    if task == "exact":  # a clip that failed is a miss, as local runners count it
        summary.update(metrics.exact_match([(d["hypothesis"] or "", d["reference"]) for d in details], metrics.exact_key(norm)))
    if task in ("lid", "classify"):
        gold = [(d["hypothesis"], d["reference"]) for d in done]
        summary.update(metrics.classification(gold))
    return summary


def _default_service() -> Service:
    from harken.api import default_service

    return default_service()
