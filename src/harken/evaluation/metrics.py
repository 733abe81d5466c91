"""Scores: WER/CER with jiwer, exact match as local runners report it, accuracy, macro-F1, and
diarization error rate with pyannote.metrics."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from harken.errors import InvalidOptionError, MissingExtraError, needs_extra, require
from harken.results import SpeakerTurn

__all__ = ["normaliser", "wer_cer", "exact_match", "exact_key", "classification", "latency", "normalise_exact",
           "DiarErrors", "DiarScore", "DiarizationScorer", "COLLAR_S"]

# pyannote's collar is the whole width forgiven around each reference boundary: 0.5 is +-0.25 s,
# what md-eval and most papers call "a 0.25 s collar". Overlapping speech is scored.
COLLAR_S = 0.5


def normaliser(name: str) -> Callable[[str], str]:
    """Whisper's English normaliser, its basic multilingual one, or none."""
    if name == "none":
        return lambda text: text
    try:
        if name == "english":
            from whisper_normalizer.english import EnglishTextNormalizer

            return EnglishTextNormalizer()
        if name == "basic":
            from whisper_normalizer.basic import BasicTextNormalizer

            return BasicTextNormalizer()
    except ImportError:
        raise MissingExtraError(needs_extra("text normalisers", "eval", "whisper-normalizer")) from None
    raise InvalidOptionError(f"normalizer must be english, basic or none, not {name!r}", param="normalizer")


def wer_cer(references: list[str], hypotheses: list[str]) -> tuple[float, float]:
    """Corpus WER and CER over already normalised texts (empty references are left out)."""
    import jiwer

    pairs = [(r, h) for r, h in zip(references, hypotheses) if r.strip()]
    if not pairs:
        return 0.0, 0.0
    refs, hyps = [r for r, _ in pairs], [h for _, h in pairs]
    return float(jiwer.wer(refs, hyps)), float(jiwer.cer(refs, hyps))


def normalise_exact(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().lower())


def exact_key(norm: Callable[[str], str]) -> Callable[[str], str]:
    """What exact match compares: the chosen normaliser's text with whitespace runs made one space
    (so `none` compares the texts as written, case and punctuation included)."""
    return lambda text: " ".join(norm(text).split())


def exact_match(pairs: list[tuple[str, str]], key: Callable[[str], str] = normalise_exact) -> dict[str, float | int]:
    """One binary match per file (texts equal after `key`); a miss counts as one false positive
    and one false negative."""
    tp = sum(key(p) == key(g) for p, g in pairs)
    miss = len(pairs) - tp
    fp = fn = miss
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"count": len(pairs), "tp": tp, "fp": fp, "fn": fn, "precision": precision, "recall": recall, "f1": f1}


def classification(pairs: list[tuple[str, str]]) -> dict:
    """Accuracy, macro-F1 over the reference labels, and the confusion matrix (rows: reference)."""
    labels = sorted({g for _, g in pairs} | {p for p, _ in pairs})
    index = {label: i for i, label in enumerate(labels)}
    matrix = np.zeros((len(labels), len(labels)), dtype=int)
    for predicted, gold in pairs:
        matrix[index[gold], index[predicted]] += 1
    f1s = []
    for label in sorted({g for _, g in pairs}):
        i = index[label]
        tp, fp, fn = matrix[i, i], matrix[:, i].sum() - matrix[i, i], matrix[i, :].sum() - matrix[i, i]
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    accuracy = float(np.trace(matrix) / len(pairs)) if pairs else 0.0
    return {"accuracy": accuracy, "macro_f1": float(np.mean(f1s)) if f1s else 0.0,
            "labels": labels, "confusion": matrix.tolist()}


def latency(seconds: list[float], audio_s: list[float]) -> dict[str, float | None]:
    """Mean, p50 and p95 seconds per clip and the real-time factor; None with nothing timed, since
    a zero would read as an instant model."""
    if not seconds:
        return {"latency_mean_s": None, "latency_p50_s": None, "latency_p95_s": None, "rtf": None}
    arr = np.asarray(seconds)
    return {
        "latency_mean_s": float(arr.mean()),
        "latency_p50_s": float(np.percentile(arr, 50)),
        "latency_p95_s": float(np.percentile(arr, 95)),
        "rtf": float(arr.sum() / max(sum(audio_s), 1e-9)),
    }


@dataclass(frozen=True)
class DiarErrors:
    """Diarization error rate and its parts, each a share of the reference speech scored."""

    der: float
    missed: float
    false_alarm: float
    speaker_confusion: float

    @classmethod
    def of(cls, components: Any) -> DiarErrors:
        total = components["total"]

        def share(name: str) -> float:
            return float(components[name] / total) if total else 0.0
        return cls(float(components["diarization error rate"]), share("missed detection"), share("false alarm"),
                   share("confusion"))


@dataclass(frozen=True)
class DiarScore(DiarErrors):
    """One clip's errors, and how many speakers speak in its scored regions by the reference and
    by the diarizer."""

    reference_speakers: int
    found_speakers: int


class DiarizationScorer:
    """DER clip by clip, accumulated over the clips for the pooled DER (total error over total
    reference speech, so a long clip weighs more than a short one, as md-eval pools)."""

    def __init__(self, collar: float = COLLAR_S) -> None:
        diarization = require("pyannote.metrics.diarization", "eval", "scoring diarization (DER)")
        self._core = require("pyannote.core", "eval", "scoring diarization (DER)")
        self._metric = diarization.DiarizationErrorRate(collar=collar, skip_overlap=False)

    def score(self, uri: str, reference: Sequence[SpeakerTurn], found: Sequence[SpeakerTurn],
              regions: Sequence[tuple[float, float]] | None, duration: float) -> DiarScore:
        """Score `found` against `reference` within `regions` (None: the whole clip, which runs to
        `duration` or to the last turn if that is later, so no reference speech goes unscored)."""
        core = self._core
        if regions is None:
            regions = [(0.0, max([duration, *(t.end for t in reference), *(t.end for t in found)]))]
        uem = core.Timeline([core.Segment(a, b) for a, b in regions], uri=uri).support()
        ref, hyp = self._annotation(uri, reference), self._annotation(uri, found)
        components = self._metric(ref, hyp, uem=uem, detailed=True)
        errors = DiarErrors.of(components)
        return DiarScore(**asdict(errors), reference_speakers=len(ref.crop(uem).labels()),
                         found_speakers=len(hyp.crop(uem).labels()))

    def pooled(self) -> DiarErrors:
        """The accumulated errors of every clip scored so far."""
        return DiarErrors.of({**{name: self._metric[name] for name in self._metric.components_},
                              "diarization error rate": abs(self._metric)})

    def _annotation(self, uri: str, turns: Sequence[SpeakerTurn]):
        annotation = self._core.Annotation(uri=uri)
        for track, turn in enumerate(turns):
            if turn.end > turn.start:
                annotation[self._core.Segment(turn.start, turn.end), track] = turn.speaker
        return annotation
