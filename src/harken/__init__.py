"""harken: offline audio understanding with local models.

    >>> import harken
    >>> harken.transcribe_file("speech.flac")["text"]
"""

from harken.api import Model, load_model, transcribe_file, transcribe_files
from harken.audio import Audio, load_audio
from harken.config import Settings
from harken.engines.base import TranscribeOptions
from harken.errors import HarkenError
from harken.evaluation import EvalReport, evaluate, evaluate_folder
from harken.results import LanguageGuess, Segment, Timings, Transcript, Word
from harken.service import Service

__version__ = "0.1.0"

__all__ = [
    "Audio",
    "EvalReport",
    "HarkenError",
    "LanguageGuess",
    "Model",
    "Segment",
    "Service",
    "Settings",
    "Timings",
    "TranscribeOptions",
    "Transcript",
    "Word",
    "evaluate",
    "evaluate_folder",
    "load_audio",
    "load_model",
    "transcribe_file",
    "transcribe_files",
]
