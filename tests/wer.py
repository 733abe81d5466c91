"""Word error rate with Whisper's English normaliser, as every ASR test and benchmark scores."""

from __future__ import annotations

import jiwer
from whisper_normalizer.english import EnglishTextNormalizer

_normalise = EnglishTextNormalizer()


def wer(references: list[str], hypotheses: list[str]) -> float:
    return jiwer.wer([_normalise(r) for r in references], [_normalise(h) for h in hypotheses])
