"""Where to cut long audio: contiguous pieces that end in silences.

Voice activity detectors miss quiet or band-limited speech (Silero misses whole FLEURS
utterances), so no audio is ever thrown away here: the pieces cover the clip end to end and
the detector only helps choose cut points. A frame counts as quiet when the detector calls it
silence, its energy is far below the loudest frame nearby, *and* it is close to the local noise
floor. The last test matters when a quiet speaker follows a loud one: measured only against
the loud neighbour, the quiet speech itself looked like silence and got cut in the middle.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from harken.audio.decode import SAMPLE_RATE

__all__ = ["Cutter", "Piece", "plan_pieces", "true_runs"]

_FRAME = 512  # Silero's window at 16 kHz
_FPS = SAMPLE_RATE / _FRAME


@dataclass(frozen=True)
class Piece:
    start: float
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start

    def slice(self, samples: np.ndarray) -> np.ndarray:
        return samples[int(self.start * SAMPLE_RATE) : int(self.end * SAMPLE_RATE)]


_FLOOR_PERCENTILE = 10.0  # the local noise floor: a low percentile of frame energy within +-5 s
_FLOOR_MARGIN_DB = 8.0  # quiet frames lie within this much of the floor
_VAD_THRESHOLD = 0.35  # quiet frames have a lower speech probability
_QUIET_DB = -35.0  # and lie this far under the loudest frame within +-5 s
_CHUNK_S = 900.0  # the longest stretch Silero runs over in one call: its memory grows with the stretch
_ROWS = 4096  # frames whose +-5 s neighbourhoods are ranked at once


@dataclass(frozen=True)
class _Activity:
    speech_prob: np.ndarray
    level_db: np.ndarray  # frame energy relative to the loudest frame within +-5 s
    above_floor_db: np.ndarray  # frame energy above the local noise floor

    def quiet(self, vad_threshold: float, level_db: float) -> np.ndarray:
        return (
            (self.speech_prob < vad_threshold)
            & (self.level_db < level_db)
            & (self.above_floor_db < _FLOOR_MARGIN_DB)
        )


def _speech_prob(samples: np.ndarray, workers: int) -> np.ndarray:
    """Silero's speech probability per frame, the clip split into one chunk per worker (and none
    longer than _CHUNK_S, so memory stays flat however long the clip).

    The ONNX session runs on one thread and releases the GIL, so chunks run in parallel. Its
    recurrent state starts afresh at each chunk, which moves the first few frames' values only.
    """
    from faster_whisper.vad import get_vad_model

    model = get_vad_model()
    frames = -(-len(samples) // _FRAME)
    per = min(-(-frames // max(1, workers)), int(_CHUNK_S * _FPS)) * _FRAME
    chunks = [samples[i : i + per] for i in range(0, len(samples), per)]  # views, copied one by one below

    def run(chunk: np.ndarray) -> np.ndarray:
        # A copy per chunk: faster-whisper's model zeroes the last 64 samples of what it is given.
        return np.asarray(model(np.pad(chunk, (0, (-len(chunk)) % _FRAME)))).reshape(-1)

    if len(chunks) == 1:
        return run(chunks[0])
    with ThreadPoolExecutor(min(len(chunks), max(1, workers))) as pool:
        return np.concatenate(list(pool.map(run, chunks)))


def _activity(samples: np.ndarray, window_s: float = 10.0, workers: int = 1) -> _Activity:
    prob = _speech_prob(samples, workers)
    whole = len(samples) // _FRAME * _FRAME
    frames = samples[:whole].reshape(-1, _FRAME)
    # Mean square per frame without a float64 copy of the clip (long audio: memory stays flat).
    power = np.einsum("ij,ij->i", frames, frames, dtype=np.float64)
    if whole < len(samples):  # the last frame, padded with silence as Silero's is
        tail = samples[whole:].astype(np.float64)
        power = np.append(power, tail @ tail)
    db = 10 * np.log10(power / _FRAME + 1e-12)
    half = int(window_s * _FPS) // 2
    windows = np.lib.stride_tricks.sliding_window_view(np.pad(db, half, mode="edge"), 2 * half + 1)
    floor, loudest = np.empty(len(db)), np.empty(len(db))
    for i in range(0, len(db), _ROWS):  # in blocks: a percentile copies its rows
        floor[i : i + _ROWS] = np.percentile(windows[i : i + _ROWS], _FLOOR_PERCENTILE, axis=1)
        loudest[i : i + _ROWS] = windows[i : i + _ROWS].max(1)
    return _Activity(prob[: len(db)], db - loudest, db - floor)


def true_runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) frame indices of each run of True in `mask`."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], mask.astype(np.int8), [0]))))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


class Cutter:
    """Where to cut one clip. The VAD and levels are computed once, when first needed, so a
    repair that cuts a piece again reuses them (with the whole clip as context)."""

    def __init__(self, samples: np.ndarray, *, workers: int = 1) -> None:
        self.samples, self.workers = samples, workers
        self.duration = len(samples) / SAMPLE_RATE

    @cached_property
    def activity(self) -> _Activity:
        return _activity(self.samples, workers=self.workers)

    def pieces(
        self,
        *,
        max_len: float = 20.0,
        min_len: float = 2.0,
        min_silence: float = 0.3,
        vad_threshold: float = _VAD_THRESHOLD,
        quiet_db: float = _QUIET_DB,
    ) -> list[Piece]:
        """Pieces of at most `max_len` s that cover the clip without gaps.

        Cuts go at the middle of every quiet run of at least `min_silence` s; pieces shorter
        than `min_len` are merged into their predecessor; a piece still longer than `max_len` is
        cut at its quietest frame in the second half of the allowed span.
        """
        return self._cut(0.0, self.duration, max_len, min_len, min_silence, vad_threshold, quiet_db)

    def speech(self, piece: Piece, threshold: float = 0.5) -> np.ndarray:
        """Per VAD frame of `piece` (32 ms), whether the detector hears speech."""
        return self.activity.speech_prob[int(piece.start * _FPS) : int(piece.end * _FPS)] > threshold

    def split(self, piece: Piece, *, min_len: float = 1.5, min_silence: float = 0.1) -> list[Piece]:
        """Cut one piece again at its shorter pauses (to re-decode speech a decoder skipped).

        No part is longer than 60 % of the piece: speech without a pause (a crowd behind the
        speaker) is still cut, at its least speech-like frame.
        """
        max_len = max(2 * min_len, 0.6 * piece.duration)
        return self._cut(piece.start, piece.end, max_len, min_len, min_silence, _VAD_THRESHOLD, _QUIET_DB)

    def _cut(
        self, start: float, end: float, max_len: float, min_len: float, min_silence: float,
        vad_threshold: float, quiet_db: float,
    ) -> list[Piece]:
        if end - start <= max_len:
            return [Piece(start, end)]
        act = self.activity
        first = int(start * _FPS)
        quiet = act.quiet(vad_threshold, quiet_db)[first : int(end * _FPS)]
        cuts = [(first + (a + b) / 2) / _FPS for a, b in true_runs(quiet) if (b - a) / _FPS >= min_silence]
        bounds = [start, *(c for c in cuts if start < c < end), end]
        merged: list[list[float]] = []
        for a, b in zip(bounds, bounds[1:]):
            if merged and (b - a < min_len or merged[-1][1] - merged[-1][0] < min_len) and b - merged[-1][0] <= max_len:
                merged[-1][1] = b
            else:
                merged.append([a, b])
        pieces: list[Piece] = []
        for a, b in merged:
            while b - a > max_len:
                lo, hi = int((a + max_len / 2) * _FPS), int((a + max_len) * _FPS)
                # Lowest speech probability, ties broken by level: the least harmful place to cut.
                score = act.speech_prob[lo:hi] + act.level_db[lo:hi] / 100.0
                cut = (lo + int(np.argmin(score))) / _FPS
                pieces.append(Piece(a, cut))
                a = cut
            pieces.append(Piece(a, b))
        return pieces


def plan_pieces(samples: np.ndarray, *, workers: int = 1, **options: float) -> list[Piece]:
    """`Cutter(samples).pieces(...)`: `workers` threads run the VAD."""
    return Cutter(samples, workers=workers).pieces(**options)
