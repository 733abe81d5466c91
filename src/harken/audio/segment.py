"""Where to cut long audio: contiguous pieces that end in silences.

Voice activity detectors miss quiet or band-limited speech (Silero misses whole FLEURS
utterances), so no audio is ever thrown away here: the pieces cover the clip end to end and
the detector only helps choose cut points. A frame counts as quiet when the detector calls it
silence, its energy is far below the loudest frame nearby, *and* it is close to the local noise
floor. The last test matters when a quiet speaker follows a loud one: measured only against
the loud neighbour, the quiet speech itself looked like silence and got cut in the middle.

The detector hears the clip levelled (audio/level.py), and a piece also ends wherever the
speech changes source: speech 20 dB louder or quieter than the speech just before it is
another recording or microphone, where the gain starts afresh, and where Whisper may pass over
the second one in a shared window (engines/whisper_longform.py checks such windows).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from harken.audio.decode import SAMPLE_RATE
from harken.audio.level import apply_gain, even_gain, gate, too_quiet

__all__ = ["Cutter", "Piece", "pack", "plan_pieces", "true_runs"]

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
# Speech this much louder or quieter than the speech just before it comes from another source (a
# join of recordings, another microphone): one talker's phrases differ by 10 dB or less.
_SOURCE_JUMP_DB = 20.0
_SOURCE_SPAN_S = 1.5  # the speech just before or after a frame
_SOURCE_MIN_SPEECH_S = 0.5  # each side holds at least a word of it
# The stretch Silero runs over in one call (its memory grows with the stretch): a clip of up to
# a minute is scored in one pass, as faster-whisper's VAD scores a clip; longer ones in
# parallel chunks (a 10-minute join: 10 chunks, 1.2 s on 2 threads against 2.2-3.0 s in one).
_CHUNK_S = 60.0
_ROWS = 4096  # frames whose +-5 s neighbourhoods are ranked at once
_MIN_PAUSE_S = 0.05  # a cut forced into speech (no pause) costs as a pause this short


@dataclass(frozen=True)
class _Activity:
    speech_prob: np.ndarray
    gain_db: np.ndarray  # the gain that evens out the clip's loudness (audio/level.py)
    heard_gain_db: np.ndarray  # the same, lifting only near speech: what Whisper hears (level.gate)
    level_db: np.ndarray  # frame energy relative to the loudest frame within +-5 s
    above_floor_db: np.ndarray  # frame energy above the local noise floor
    source_changes: np.ndarray  # frames where the speech changes source (_SOURCE_JUMP_DB)

    def quiet(self, vad_threshold: float, level_db: float) -> np.ndarray:
        return (
            (self.speech_prob < vad_threshold)
            & (self.level_db < level_db)
            & (self.above_floor_db < _FLOOR_MARGIN_DB)
        )


def _speech_prob(samples: np.ndarray, workers: int, gain_db: np.ndarray) -> np.ndarray:
    """Silero's speech probability per frame of the levelled clip, in chunks of _CHUNK_S run
    on up to `workers` threads (the ONNX session runs on one thread and releases the GIL).

    Silero's recurrent state starts afresh at each chunk, which moves its values for seconds
    after (by up to 0.2 on jfk.flac). So the chunks are a fixed length, never a share of the
    workers: the same audio is heard the same way, and transcribed the same, on any machine.
    """
    from faster_whisper.vad import get_vad_model

    model = get_vad_model()
    per = int(_CHUNK_S * _FPS) * _FRAME
    starts = range(0, len(samples), per)

    def run(start: int) -> np.ndarray:
        # Levelled into a new array per chunk, as Silero needs a copy anyway: faster-whisper's
        # model zeroes the last 64 samples of what it is given.
        chunk = apply_gain(samples[start : start + per], gain_db, _FRAME, start)
        return np.asarray(model(np.pad(chunk, (0, (-len(chunk)) % _FRAME)))).reshape(-1)

    if len(starts) == 1:
        return run(0)
    with ThreadPoolExecutor(min(len(starts), max(1, workers))) as pool:
        return np.concatenate(list(pool.map(run, starts)))


def _frame_db(samples: np.ndarray) -> np.ndarray:
    """Energy per frame, dBFS."""
    whole = len(samples) // _FRAME * _FRAME
    frames = samples[:whole].reshape(-1, _FRAME)
    # Mean square per frame without a float64 copy of the clip (long audio: memory stays flat).
    power = np.einsum("ij,ij->i", frames, frames, dtype=np.float64)
    if whole < len(samples):  # the last frame, padded with silence as Silero's is
        tail = samples[whole:].astype(np.float64)
        power = np.append(power, tail @ tail)
    return 10 * np.log10(power / _FRAME + 1e-12)


def _floor_and_loudest(db: np.ndarray, half: int) -> tuple[np.ndarray, np.ndarray]:
    """Per frame, the noise floor and the loudest frame within `half` frames either side."""
    windows = np.lib.stride_tricks.sliding_window_view(np.pad(db, half, mode="edge"), 2 * half + 1)
    floor, loudest = np.empty(len(db)), np.empty(len(db))
    for i in range(0, len(db), _ROWS):  # in blocks: a percentile copies its rows
        floor[i : i + _ROWS] = np.percentile(windows[i : i + _ROWS], _FLOOR_PERCENTILE, axis=1)
        loudest[i : i + _ROWS] = windows[i : i + _ROWS].max(1)
    return floor, loudest


def _activity(samples: np.ndarray, window_s: float = 10.0, workers: int = 1, level: bool = True) -> _Activity:
    """Speech and levels of the clip as heard after its loudness is evened out (audio/level.py):
    Silero, like Whisper, misses speech far quieter than the rest. With `level` False, as
    recorded: no gain and no source changes."""
    half = int(window_s * _FPS) // 2
    raw = _frame_db(samples)
    if level:
        raw_floor = _floor_and_loudest(raw, half)[0]
        prob = _speech_prob(samples, workers, even_gain(raw, raw_floor, _FPS))[: len(raw)]
        # Where the speech changes source is only heard once the quiet source is levelled; then
        # the gain is made again, afresh from each change on.
        changes = _source_changes(raw, prob > 0.5)
        gain = even_gain(raw, raw_floor, _FPS, changes)
    else:
        gain, changes = np.zeros(len(raw)), np.zeros(0, dtype=np.int64)
        prob = _speech_prob(samples, workers, gain)[: len(raw)]
    db = raw + gain  # the levelled frames' energy: the gain is smooth, so near enough per frame
    floor, loudest = _floor_and_loudest(db, half)
    return _Activity(prob, gain, gate(gain, prob > 0.5, _FPS), db - loudest, db - floor, changes)


def _source_changes(db: np.ndarray, speech: np.ndarray) -> np.ndarray:
    """Frames where the loudest speech of the span after differs from that of the span before
    by more than _SOURCE_JUMP_DB. Only speech frames count (a pause is no change), and each
    side needs a few of them (a click is not speech)."""
    span, least = int(_SOURCE_SPAN_S * _FPS), int(_SOURCE_MIN_SPEECH_S * _FPS)

    def sides(x: np.ndarray, pad: float) -> tuple[np.ndarray, np.ndarray]:
        w = np.lib.stride_tricks.sliding_window_view(np.pad(x, span, constant_values=pad), span)
        return w[: len(db)], w[span + 1 : span + 1 + len(db)]  # the frames before and after each

    (lb, la), (nb, na) = sides(np.where(speech, db, -np.inf), -np.inf), sides(speech.astype(np.int16), 0)
    before, after = lb.max(1), la.max(1)
    heard = (nb.sum(1) >= least) & (na.sum(1) >= least)
    with np.errstate(invalid="ignore"):  # -inf - -inf where a side has no speech: not heard anyway
        jump = np.where(heard, after - before, 0.0)
    # Loud to quiet, the run of jumping frames starts where the loud speech ends; quiet to loud,
    # it ends where the loud speech starts.
    changes = [a if jump[a] < 0 else b for a, b in true_runs(np.abs(jump) > _SOURCE_JUMP_DB)]
    # Each at the middle of the pause between the two sources' speech, if there is one.
    heard_at = np.flatnonzero(speech)
    out = []
    for c in changes:
        i = np.searchsorted(heard_at, c)
        last, nxt = (heard_at[i - 1] + 1 if i > 0 else c), (heard_at[i] if i < len(heard_at) else c)
        out.append((last + nxt) // 2)
    return np.array(out, dtype=np.int64)


def true_runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) frame indices of each run of True in `mask`."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], mask.astype(np.int8), [0]))))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


class Cutter:
    """Where to cut one clip. The VAD and levels are computed once, when first needed, so a
    repair that cuts a piece again reuses them (with the whole clip as context)."""

    def __init__(self, samples: np.ndarray, *, workers: int = 1, level: bool = True) -> None:
        """`level=False` hears the clip as it is (no gain, no source changes)."""
        self.samples, self.workers, self.level = samples, workers, level
        self.duration = len(samples) / SAMPLE_RATE

    @cached_property
    def activity(self) -> _Activity:
        return _activity(self.samples, workers=self.workers, level=self.level)

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

    @property
    def source_cuts(self) -> list[float]:
        """Where the speech changes source (s): every piece ends there. Whisper may pass over
        one source's speech after another's in one window: `pack` can keep windows from
        joining pieces across these (given them as `breaks`)."""
        return (self.activity.source_changes / _FPS).tolist()

    def pause(self, at: float) -> float:
        """How long (s) the pause is that time `at` lies in, by the cutter's own test for quiet
        (0.0 where `at` is not in a pause: a cut forced into speech)."""
        if not 0 <= at < self.duration:
            return 0.0
        starts, ends = self._pauses
        i = int(at * _FPS)
        k = int(np.searchsorted(starts, i, side="right")) - 1
        return float(ends[k] - starts[k]) / _FPS if k >= 0 and i < ends[k] else 0.0

    def longest_pause(self, start: float, end: float) -> float:
        """The longest stretch (s) between `start` and `end` s where the VAD hears no speech: where
        a speaker paused, even over a noisy room (the cutter's own test for quiet, which also
        wants the level down, finds no pause in JFK's speech over the crowd)."""
        heard = self.speech(Piece(max(0.0, start), min(self.duration, end)))
        runs = true_runs(~heard)
        return max((b - a for a, b in runs), default=0) / _FPS

    @cached_property
    def _pauses(self) -> tuple[np.ndarray, np.ndarray]:
        """Start and end frames of every run of quiet frames, once per clip."""
        runs = true_runs(self.activity.quiet(_VAD_THRESHOLD, _QUIET_DB))
        return np.array([a for a, _ in runs], dtype=np.int64), np.array([b for _, b in runs], dtype=np.int64)

    def levelled(self, piece: Piece) -> np.ndarray:
        """The piece's samples with the clip's loudness evened out (a new array)."""
        return apply_gain(piece.slice(self.samples), self.activity.heard_gain_db, _FRAME, int(piece.start * SAMPLE_RATE))

    def as_heard(self, piece: Piece) -> np.ndarray:
        """The piece's samples as Whisper hears a clip of one window: as recorded (faster-whisper's
        input), or levelled, as long audio is, where the clip's speech is far quieter than speech
        is recorded at (level.too_quiet)."""
        return self.levelled(piece) if self.too_quiet else piece.slice(self.samples)

    @cached_property
    def too_quiet(self) -> bool:
        return too_quiet(_frame_db(self.samples), self.activity.speech_prob > 0.5, _FPS)

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
        # Each cut at the middle of a pause, with that pause's length.
        cuts = {(first + (a + b) / 2) / _FPS: (b - a) / _FPS for a, b in true_runs(quiet) if (b - a) / _FPS >= min_silence}
        changes = {c for c in self.source_cuts if start < c < end}
        bounds = _merge_short([start, *sorted({c for c in cuts if start < c < end} | changes), end],
                              cuts, changes, min_len, max_len)
        pieces: list[Piece] = []
        for a, b in zip(bounds, bounds[1:]):
            while b - a > max_len:
                lo, hi = int((a + max_len / 2) * _FPS), int((a + max_len) * _FPS)
                # Lowest speech probability, ties broken by level: the least harmful place to cut.
                score = act.speech_prob[lo:hi] + act.level_db[lo:hi] / 100.0
                cut = (lo + int(np.argmin(score))) / _FPS
                pieces.append(Piece(a, cut))
                a = cut
            pieces.append(Piece(a, b))
        return pieces


def _merge_short(bounds: list[float], pauses: dict[float, float], keep: set[float], min_len: float,
                 max_len: float) -> list[float]:
    """The cuts `bounds` (clip start and end included) with pieces shorter than `min_len` merged
    into a neighbour: the shortest piece first, across whichever of its cuts lies in the shorter
    pause (`pauses`), so that the cuts left are at the longest pauses. Cuts in `keep` (changes of
    source) stay, and no merged piece grows over `max_len`."""
    bounds = list(bounds)
    while True:
        short = sorted((b - a, i) for i, (a, b) in enumerate(zip(bounds, bounds[1:])) if b - a < min_len)
        for _, i in short:
            # Dropping cut k joins the pieces on either side of it.
            options = [
                (pauses.get(bounds[k], 0.0), k) for k in (i, i + 1)
                if 0 < k < len(bounds) - 1 and bounds[k] not in keep and bounds[k + 1] - bounds[k - 1] <= max_len
            ]
            if options:
                del bounds[min(options)[1]]
                break
        else:
            return bounds


def pack(pieces: list[Piece], max_len: float, breaks: Sequence[float], pause: Callable[[float], float]) -> list[Piece]:
    """Consecutive pieces joined into as few windows as fit: each lasts at most `max_len` s (a
    piece already longer stays as it is) and spans none of `breaks`.

    Of the packings with that fewest windows, the one whose windows end at the longest pauses
    (`pause(t)`: the length in s of the pause a cut at `t` lies in). A window that ends at a
    short pause mid-sentence decodes its last words without what follows, and the next starts
    without what came before; filled greedily, a window ends wherever 28 s runs out. Each
    window edge costs 1/pause, so one short pause weighs more than several long ones.
    """
    n = len(pieces)
    forced = [any(abs(t - p.start) < 1e-6 for t in breaks) for p in pieces]
    # best[i]: (windows, cost) of the best packing of pieces[:i], and where its last window starts.
    best: list[tuple[tuple[int, float], int]] = [((0, 0.0), 0)] + [((n + 1, 0.0), 0)] * n
    for i in range(1, n + 1):
        edge = 0.0 if i == n or forced[i] else 1.0 / max(pause(pieces[i - 1].end), _MIN_PAUSE_S)
        for j in range(i - 1, -1, -1):
            if j < i - 1 and (pieces[i - 1].end - pieces[j].start > max_len or forced[j + 1]):
                break
            (windows, cost), _ = best[j]
            best[i] = min(best[i], ((windows + 1, cost + edge), j))
    packed, i = [], n
    while i > 0:
        j = best[i][1]
        packed.append(Piece(pieces[j].start, pieces[i - 1].end))
        i = j
    return packed[::-1]


def plan_pieces(samples: np.ndarray, *, workers: int = 1, **options: float) -> list[Piece]:
    """`Cutter(samples).pieces(...)`: `workers` threads run the VAD."""
    return Cutter(samples, workers=workers).pieces(**options)
