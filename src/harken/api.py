"""The Python API: a few functions over one shared, lazily built Service."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harken.audio import AudioSource
from harken.config import Settings
from harken.errors import AudioError
from harken.formats import file_error, file_record
from harken.results import LanguageGuess, Transcript
from harken.service import Service

__all__ = ["Model", "load_model", "transcribe_file", "transcribe_files", "default_service"]

_default: Service | None = None
_default_lock = threading.Lock()


def default_service() -> Service:
    """The process-wide Service, built on first use from harken.toml and HARKEN_* variables."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Service()
        return _default


@dataclass
class Model:
    """A loaded model bound to a Service."""

    name: str
    service: Service

    def transcribe(self, source: AudioSource, **options: Any) -> Transcript:
        return self.service.transcribe(source, model=self.name, **options)

    def translate(self, source: AudioSource, **options: Any) -> Transcript:
        return self.service.translate(source, model=self.name, **options)

    def detect_language(self, source: AudioSource) -> LanguageGuess:
        return self.service.detect_language(source, model=self.name)


def load_model(name_or_path: str | os.PathLike | None = None, **settings: Any) -> Model:
    """Load a catalogue model, alias or model directory now. Keyword arguments override
    settings (device, compute_type, cpu_threads, warmup, ...) for this model's Service."""
    service = Service(Settings.load(**settings)) if settings else default_service()
    loaded = service.load_model(name_or_path)
    return Model(loaded.entry.name, service)


def transcribe_file(
    path: str | os.PathLike,
    model: str | os.PathLike | None = None,
    prompt: str | None = None,
    max_new_tokens: int | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Transcribe one file; returns {file, text, language, segments, tokens_generated,
    elapsed_sec, timings, ...}. Raises HarkenError on bad input."""
    transcript = default_service().transcribe(
        Path(path), model=model, initial_prompt=prompt, max_new_tokens=max_new_tokens, **options
    )
    return file_record(str(path), transcript)


def transcribe_files(
    paths: Iterable[str | os.PathLike],
    model: str | os.PathLike | None = None,
    prompt: str | None = None,
    max_new_tokens: int | None = None,
    on_result: Callable[[dict[str, Any]], None] | None = None,
    **options: Any,
) -> list[dict[str, Any]]:
    """Transcribe many files in input order. A file that fails gives
    {file, error: {type, message}} in its place instead of stopping the others."""
    results = []
    for path in paths:
        try:
            result = transcribe_file(path, model=model, prompt=prompt, max_new_tokens=max_new_tokens, **options)
        except AudioError as exc:  # anything else (model, options) is the same for every file
            result = file_error(str(path), exc)
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results

