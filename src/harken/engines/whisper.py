"""Whisper speech recognition on faster-whisper (CTranslate2)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from harken.audio import SAMPLE_RATE
from harken.engines.base import Capability, EngineTranscript, TranscribeOptions, Watch
from harken.errors import CapabilityError, ModelLoadError
from harken.results import Segment, Word

__all__ = ["WhisperEngine", "resolve_device", "fw_segment"]

# faster-whisper's own fallback ladder, used when the caller asks for greedy/beam decoding.
_FALLBACK_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


class WhisperEngine:
    """Transcription, translation and language detection with a CTranslate2 Whisper model.

    By default every clip takes the segmented path (engines/whisper_longform.py): a clip of up
    to 30 s is one window, decoded untimed with its sentences timed by their words, or exactly as
    faster-whisper decodes it where that fails (a word or two under 2 s in a margin of silence,
    speech far too quiet levelled first); longer ones are cut at pauses and packed into windows,
    the windows of several clips decoded in parallel on single-threaded CTranslate2 workers. `long_form="sequential"`
    selects faster-whisper's own long-form decoder.
    """

    window_s = 30.0
    batches = True

    def __init__(
        self,
        model_dir: Path,
        *,
        device: str = "auto",
        compute_type: str = "default",
        workers: int = 0,
        cpu_threads: int = 0,
    ):
        from harken.engines.whisper_model import Model

        device = resolve_device(device)
        if compute_type == "default":
            compute_type = "int8" if device == "cpu" else "default"
        workers, cpu_threads = _parallelism(device, workers, cpu_threads)
        self.workers, self.cpu_threads = workers, cpu_threads
        self.parallel_calls = workers  # each CTranslate2 worker can serve a call of its own
        try:
            self.model = Model(
                str(model_dir), device=device, compute_type=compute_type, cpu_threads=cpu_threads, num_workers=workers
            )
        except (RuntimeError, ValueError, OSError) as exc:
            raise ModelLoadError(f"cannot load Whisper model from {model_dir}: {exc}") from None
        self.multilingual = bool(self.model.model.is_multilingual)
        self.capabilities = Capability.TRANSCRIBE
        if self.multilingual:
            self.capabilities |= Capability.TRANSLATE | Capability.DETECT_LANGUAGE

    def warmup(self) -> None:
        self.model.warm_workers()

    def close(self) -> None:
        self.model = None  # CTranslate2 frees the weights with the last reference

    def transcribe(self, samples: np.ndarray, options: TranscribeOptions) -> EngineTranscript:
        return self.transcribe_batch([samples], options)[0]

    def transcribe_batch(
        self, clips: list[np.ndarray], options: TranscribeOptions, watches: Sequence[Watch | None] | None = None,
    ) -> list[EngineTranscript]:
        """Several clips with the same options; the result for a clip does not depend on the others."""
        watches = list(watches) if watches is not None else [None] * len(clips)
        self._check(options)
        if options.seed is not None:
            import ctranslate2

            # CTranslate2's generator is per worker thread and seeded when that thread first
            # samples, from this global seed; it has no per-call seed. So a seed repeats the
            # first sampled run of a process, not every run (the CLI's --seed help says so).
            ctranslate2.set_random_seed(options.seed)
        if options.long_form == "sequential":
            return [self._sequential(c, options, w or Watch()) for c, w in zip(clips, watches)]
        from harken.engines.whisper_longform import SegmentedDecoder

        return SegmentedDecoder(self.model).transcribe_many(clips, options, watches)

    def detect_language(self, samples: np.ndarray) -> tuple[str, float, list[tuple[str, float]]]:
        if not self.multilingual:
            return "en", 1.0, [("en", 1.0)]
        language, probability, all_probs = self.model.detect_language(samples)
        return language, float(probability), [(lang, float(p)) for lang, p in all_probs]

    def _check(self, options: TranscribeOptions) -> None:
        if options.language not in (None, "en") and not self.multilingual:
            raise CapabilityError(
                f"this model is English-only; language {options.language!r} needs a multilingual model",
                param="language",
            )
        if options.language is not None:
            if options.language not in self.model.supported_languages:
                raise CapabilityError(f"Whisper does not know language {options.language!r}", param="language")

    def _sequential(self, samples: np.ndarray, options: TranscribeOptions, watch: Watch) -> EngineTranscript:
        kwargs: dict[str, Any] = dict(
            language=options.language,
            task=options.task,
            beam_size=options.beam_size,
            temperature=_FALLBACK_TEMPERATURES if options.temperature == 0.0 else options.temperature,
            initial_prompt=options.initial_prompt,
            word_timestamps=options.word_timestamps,
            vad_filter=options.vad_filter,
            max_new_tokens=options.max_new_tokens,
        )
        segments, info = self.model.transcribe(samples, **kwargs)
        total = len(samples) / SAMPLE_RATE
        decoded: list[Segment] = []
        said = False
        for s in segments:  # a generator: each segment is decoded as it is asked for
            decoded.append(fw_segment(s, len(decoded)))
            if watch.progress is not None:
                watch.progress(min(s.end, total), total)
            if watch.text is not None and decoded[-1].text:
                watch.text((" " if said else "") + decoded[-1].text)
                said = True
        return EngineTranscript(tuple(decoded), info.language, float(info.language_probability))


def resolve_device(device: str) -> str:
    """"auto" is CUDA when CTranslate2 sees a GPU, else the CPU."""
    if device != "auto":
        return device
    try:
        import ctranslate2

        return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
    except Exception:  # a broken CUDA install still leaves the CPU
        return "cpu"


def _parallelism(device: str, workers: int, cpu_threads: int) -> tuple[int, int]:
    """Workers and threads per worker; 0 means choose.

    On CPU, several single-threaded CTranslate2 workers decoding different batches beat one
    worker with every core: a small decoder step is too short to split across threads. The
    workers share one copy of the weights. The segmented path keeps them all busy.
    """
    if device != "cpu":
        return workers or 1, cpu_threads
    cores = os.cpu_count() or 1
    workers = workers or min(4, cores)
    return workers, cpu_threads or max(1, cores // workers)


def fw_segment(seg: Any, index: int = 0, offset: float = 0.0, limit: float = float("inf"), floor: float = 0.0) -> Segment:
    """A faster-whisper segment as harken's, its times shifted by `offset` (where the decoded
    audio starts) and kept within `floor` and `limit` (the piece's own start and end)."""

    def at(t: float) -> float:
        return round(float(max(floor, min(offset + t, limit))), 3)

    words = None
    if seg.words is not None:
        words = tuple(Word(at(w.start), at(w.end), w.word, round(float(w.probability), 4)) for w in seg.words)
    return Segment(
        id=index,
        start=at(seg.start),
        end=at(seg.end),
        text=seg.text.strip(),
        tokens=tuple(seg.tokens),
        avg_logprob=float(seg.avg_logprob),
        no_speech_prob=float(seg.no_speech_prob),
        compression_ratio=float(seg.compression_ratio),
        temperature=float(seg.temperature or 0.0),
        words=words,
    )
