"""harken: offline audio understanding with local models.

    >>> import harken
    >>> harken.transcribe_file("speech.flac")["text"]

The names below are imported when first used, so that `import harken.audio` (the decoder's
host process, say) does not pay for the whole package.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "Audio": "harken.audio",
    "EvalReport": "harken.evaluation",
    "HarkenError": "harken.errors",
    "LanguageGuess": "harken.results",
    "Model": "harken.api",
    "Segment": "harken.results",
    "Service": "harken.service",
    "Settings": "harken.config",
    "Timings": "harken.results",
    "TranscribeOptions": "harken.engines.base",
    "Transcript": "harken.results",
    "Word": "harken.results",
    "LiveOptions": "harken.live",
    "TurnDetection": "harken.live",
    "listen": "harken.live",
    "evaluate": "harken.evaluation",
    "evaluate_folder": "harken.evaluation",
    "load_audio": "harken.audio",
    "load_model": "harken.api",
    "transcribe_file": "harken.api",
    "transcribe_files": "harken.api",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'harken' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


if TYPE_CHECKING:
    from harken.api import Model, load_model, transcribe_file, transcribe_files
    from harken.audio import Audio, load_audio
    from harken.config import Settings
    from harken.engines.base import TranscribeOptions
    from harken.errors import HarkenError
    from harken.live import LiveOptions, TurnDetection, listen
    from harken.evaluation import EvalReport, evaluate, evaluate_folder
    from harken.results import LanguageGuess, Segment, Timings, Transcript, Word
    from harken.service import Service
