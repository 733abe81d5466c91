"""Word error rate with Whisper's normalisers, as every ASR test and benchmark scores."""

from __future__ import annotations

import jiwer
from whisper_normalizer.basic import BasicTextNormalizer
from whisper_normalizer.english import EnglishTextNormalizer

_NORMALISERS = {"english": EnglishTextNormalizer(), "basic": BasicTextNormalizer()}


def wer(references: list[str], hypotheses: list[str], normaliser: str = "english") -> float:
    norm = _NORMALISERS[normaliser]
    return jiwer.wer([norm(r) for r in references], [norm(h) for h in hypotheses])
