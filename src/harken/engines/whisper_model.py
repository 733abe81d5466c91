"""faster-whisper's WhisperModel, using every core when one stream of work runs, and encoding a
short clip of unknown language once, not twice.

harken runs CTranslate2 as several single-threaded workers: windows decoded side by side use
the cores better than one window split across them. But a lone clip (one file from the CLI, one
request) then encodes on one core while the others wait, and its encoder pass is most of its
time. So a second copy of the model, one worker with every core, encodes whenever at most one
stream of work runs on the workers (`streams`); the engine's warm-up makes it. Its output is
the workers' encoder output computed with more threads (the same up to rounding): on the
development subsets the text is the same as faster-whisper's wherever it was before. The copy
costs the weights' memory again, so it is made only for models up to whisper-small
(`_COPY_MAX_BYTES`).

For the same reason, while one stream runs, faster-whisper's temperature ladder samples a
worker's worth of temperatures at a time (two on two cores; `generate_with_fallback`) and takes
the first that passes, in the ladder's order: the result is drawn as faster-whisper draws it.

Given no language, faster-whisper's `transcribe` runs one encoder pass to detect it, then
encodes the same first window again to decode it. On whisper-base (2-core CPU) the encoder is
most of a short clip's time, so the clip costs nearly twice what it needs.
`detect_and_transcribe` detects the language on exactly the window the decoding encodes and
hands that encoder output over: the clip is then decoded exactly as `transcribe` decodes it in
that language.

Detection sees the window the decoding sees; faster-whisper's own detection sees one more mel
frame (its feature extractor's padding, the last 10 ms). Whisper's language probability moves
by up to 0.01 for it (20 FLEURS clips, four languages: the same language and text on every
one); the language can differ only where two languages are all but tied.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from faster_whisper import WhisperModel
from faster_whisper.audio import pad_or_trim
from faster_whisper.transcribe import get_ctranslate2_storage

from harken.engines.whisper_window import generate_kwargs, needs_fallback, scored, too_repetitive

__all__ = ["Model"]

# whisper-small's weights are 484 MB on disk (float16); medium's 1.5 GB and large's 3 GB are too
# much to hold twice on a laptop for what the copy saves.
_COPY_MAX_BYTES = 600 * 2**20


class Model(WhisperModel):
    def __init__(self, model_dir: str, *, device: str, compute_type: str, cpu_threads: int, num_workers: int) -> None:
        super().__init__(model_dir, device=device, compute_type=compute_type, cpu_threads=cpu_threads,
                         num_workers=num_workers)
        # Per worker thread: the (features, encoder output) handed to that thread's next encode.
        self._ready = threading.local()
        self._whole = None  # made by warm_workers, the engine's warm-up
        self._copy_of = (model_dir, device, compute_type, num_workers, cpu_threads)
        self._whole_free = threading.Lock()
        self._streams, self._count = 0, threading.Lock()
        self._workers_warm = threading.Event()

    @contextmanager
    def streams(self, n: int) -> Iterator[None]:
        """`n` streams of work (threads each calling the workers in turn) run meanwhile."""
        with self._count:
            self._streams += n
        try:
            yield
        finally:
            with self._count:
                self._streams -= n

    def warm_workers(self) -> None:
        """An encoder pass on every worker at once (it pages the weights in and gives each worker
        its buffers), then the whole-cores copy is made. The copy encodes nothing before the
        workers have: when it made the process's first encode, the 11.9 min joins ran
        34.7-37.7 s for three, against 30.9-33.7 s. A run without the warm-up (a one-shot CLI
        command) has no copy: it would pay the copy's load for a single clip."""
        if self._workers_warm.is_set():
            return
        workers = self.model.num_workers
        silence = np.zeros((self.model.n_mels, self.feature_extractor.nb_max_frames), dtype=np.float32)
        with self.streams(workers), ThreadPoolExecutor(workers) as pool:
            list(pool.map(lambda _: self._encode(silence), range(workers)))
        self._whole = _whole_cores_copy(*self._copy_of)
        self._workers_warm.set()

    @contextmanager
    def kept_encoding(self) -> Iterator[None]:
        """Within: this thread's encoder passes are kept, and the same features encoded again
        reuse them (a clip decoded untimed, then timed, is encoded once)."""
        self._ready.kept = []
        try:
            yield
        finally:
            self._ready.kept = None

    def encode(self, features: np.ndarray):
        ready, self._ready.pair = getattr(self._ready, "pair", None), None
        kept = getattr(self._ready, "kept", None)
        for pair in ([ready] if ready is not None else []) + (kept or []):
            if pair[0].shape == features.shape and np.array_equal(pair[0], features):
                out = pair[1]
                break
        else:
            out = self._encode(features)
        if kept is not None and not any(p[1] is out for p in kept):
            kept.append((features, out))
        return out

    def generate_with_fallback(self, encoder_output, prompt: list[int], tokenizer, options):
        width = self.model.num_workers if self._streams <= 1 else 1
        max_length = self.max_length if options.max_new_tokens is None else len(prompt) + options.max_new_tokens
        if width < 2 or max_length > self.max_length:  # (faster-whisper's own raises on the second)
            return super().generate_with_fallback(encoder_output, prompt, tokenizer, options)
        temperatures = list(options.temperatures)
        tried: list[tuple] = []
        below_ratio: list[tuple] = []
        at = 0
        while at < len(temperatures):
            # The beam search alone (it mostly passes); the samples `width` at a time.
            step = temperatures[at : at + (1 if temperatures[at] == 0 else width)]
            jobs = [self._generate(encoder_output, prompt, options, t, max_length) for t in step]
            results = [job.result() for job in jobs]  # every job ends here: none runs on unseen
            for t, result in zip(step, results):  # faster-whisper's verdict on each, in order
                decoded = scored(tokenizer, options, result, t)
                tried.append(decoded)
                if not too_repetitive(options, decoded[3]):
                    below_ratio.append(decoded)
                if not needs_fallback(options, result, decoded[1], decoded[3]):
                    return decoded
            at += len(step)
        # Every step failed: faster-whisper's choice, with the last temperature for its prompt reset.
        best = max(below_ratio or tried, key=lambda d: d[1])
        return best[0], best[1], temperatures[-1], best[3]

    def _generate(self, encoder_output, prompt: list[int], options, temperature: float, max_length: int):
        """One step of the ladder, queued for a worker: faster-whisper's arguments to CTranslate2."""
        if temperature > 0:
            search = dict(beam_size=1, num_hypotheses=options.best_of, sampling_topk=0, sampling_temperature=temperature)
        else:
            search = dict(beam_size=options.beam_size, patience=options.patience)
        arguments = {**generate_kwargs(self, options), "max_length": max_length, **search}
        return self.model.generate(encoder_output, [prompt], asynchronous=True, **arguments)[0]

    def _encode(self, features: np.ndarray):
        # With two streams the workers are both busy: the copy would only take a core from one.
        if self._whole is not None and self._streams <= 1 and self._whole_free.acquire(blocking=False):
            try:
                return self._whole.encode(get_ctranslate2_storage(features[None] if features.ndim == 2 else features))
            finally:
                self._whole_free.release()
        return super().encode(features)

    def detect_and_transcribe(self, samples: np.ndarray, **options) -> tuple[list, str, float]:
        """`transcribe(samples, **options)` with the language left to Whisper (a multilingual
        model, no VAD filter): the segments, the language and its probability."""
        features = self.feature_extractor(samples)
        content = features.shape[-1] - 1  # faster-whisper decodes the frames before its padding frame
        first = pad_or_trim(features[:, : min(content, self.feature_extractor.nb_max_frames)])
        encoded = self._encode(first)
        token, probability = self.model.detect_language(encoded)[0][0]
        language = token[2:-2]  # "<|de|>"
        self._ready.pair = (first, encoded)
        try:
            segments, _ = self.transcribe(samples, language=language, **options)
            return list(segments), language, float(probability)
        finally:
            self._ready.pair = None


def _whole_cores_copy(model_dir: str, device: str, compute_type: str, workers: int, threads: int):
    """A one-worker copy with the threads of all `workers`, or None where it gains nothing (one
    worker has them all already; a GPU) or costs too much memory."""
    import ctranslate2

    weights = Path(model_dir) / "model.bin"
    if device != "cpu" or workers < 2 or not weights.is_file() or os.path.getsize(weights) > _COPY_MAX_BYTES:
        return None
    return ctranslate2.models.Whisper(model_dir, device=device, compute_type=compute_type, inter_threads=1,
                                      intra_threads=workers * max(1, threads))
