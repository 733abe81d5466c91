"""Even out loudness across a long recording before Whisper hears it.

Whisper's log-mel features are clamped 80 dB under the loudest bin of the 30 s window and
scaled by a fixed constant, so absolute level is part of what the model sees. In a recording
where one speaker is 30-50 dB quieter than another (a join of sources, a far microphone, a
phone call on speaker), the quiet speech sits where training audio had only background, and
Whisper skips it. A slow automatic gain, as telephone and broadcast chains apply, lifts each
stretch of sound to a typical speech level first. Where the speech changes source (found by
audio/segment.py) the gain starts afresh: a slow gain carried across would hold the loud
source's level over the quiet one's first words. (Levelled or not, Whisper also skips one
source after another inside one window, so pieces end at each change too.)

Loud stretches are brought down to that level and quiet ones raised, but only where the sound
stands clearly above the local noise floor: silence and steady hiss are not raised into
"speech". What Whisper hears is lifted only near speech the detector hears (gate): in a quiet
room, paper and typing stand above the floor too. What matters to Whisper is that the
speakers of one window sound alike: the target itself hardly does (-20 and -26 dBFS decode
the same joins alike).

A clip of one window is heard as recorded (faster-whisper's input), unless its speech lies far
under the level speech is recorded at (too_quiet): then it is heard levelled too.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["even_gain", "apply_gain", "gate", "too_quiet"]

TARGET_DB = -20.0  # the speech level stretches are lifted to (frame energy, dBFS): typical of read speech
MAX_GAIN_DB = 40.0  # no stretch is raised or lowered by more than this
# Sound this far above the local noise floor gets the full gain, none below SNR_FROM_DB: noise
# frames swing a few dB around their floor, speech stands 15 dB or more above it.
SNR_FROM_DB, SNR_FULL_DB = 10.0, 15.0
ENVELOPE_S = 1.5  # the loudest frame within this span is a stretch's level (about a phrase)
SMOOTH_S = 1.0  # the envelope, then the gain, are averaged over this span, so the gain never jumps
# Speech keeps its lift this far either side of what the detector hears: faster-whisper's VAD
# keeps as much around the speech it passes on (speech_pad_ms), enough for a word's soft edges.
GATE_PAD_S = 0.4
# A clip of one window whose speech lies under this (too_quiet) is far quieter than speech is
# recorded at; it is heard levelled, as long audio is, where other clips are heard as recorded.
# The read clips of ../shared/data attenuated: tiny.en decodes them alike down to about this
# level (WER 0.038 as recorded, 0.038 at -30 dB, their speech then at -44 to -48 dBFS), then
# worse (0.042 at -40 dB, 0.054 at -50 dB); every recording there that is not FLEURS speaks
# at -8 to -36 dBFS, and 4 of 5 English FLEURS clips at -42 to -63.
QUIET_SPEECH_DB = -45.0


def even_gain(db: np.ndarray, floor_db: np.ndarray, fps: float, breaks: Sequence[int] = ()) -> np.ndarray:
    """The gain (dB) per frame that brings sound to TARGET_DB.

    `db` is each frame's energy and `floor_db` the local noise floor under it, both in dBFS.
    The gain is slow, as within one recording Whisper hears speech best with its natural
    dynamics, and it starts afresh at each of `breaks` (frames where another recording
    starts), so that the loud one's level does not spill over the quiet one's first words.
    """
    bounds = [0, *sorted(b for b in breaks if 0 < b < len(db)), len(db)]
    return np.concatenate([_slow_gain(db[a:b], floor_db[a:b], fps) for a, b in zip(bounds, bounds[1:]) if b > a])


def _slow_gain(db: np.ndarray, floor_db: np.ndarray, fps: float) -> np.ndarray:
    envelope = _mean(_max(db, int(ENVELOPE_S * fps) // 2), int(SMOOTH_S * fps) // 2)
    allowed = np.clip((envelope - floor_db - SNR_FROM_DB) / (SNR_FULL_DB - SNR_FROM_DB), 0.0, 1.0)
    gain = np.clip(TARGET_DB - envelope, -MAX_GAIN_DB, MAX_GAIN_DB)
    gain = np.where(gain > 0, gain * allowed, gain)  # loud sound is always brought down
    return _mean(gain, int(SMOOTH_S * fps) // 4)


def gate(gain_db: np.ndarray, speech: np.ndarray, fps: float) -> np.ndarray:
    """The gain with its lift kept only near speech (`speech`: per frame, whether a detector
    hears it); elsewhere sound is only ever brought down.

    A slow gain lifts a pause as much as the speech around it, and in a far-field recording
    (a meeting room, a phone on the table) most of the lifted sound is not speech: paper,
    typing, the room. Whisper, handed that at speech level, writes words into it ("here here
    here", "now, now, now"). A broadcast chain gates its gain in pauses for the same reason.
    """
    if not len(gain_db):
        return gain_db.copy()
    pad = int(GATE_PAD_S * fps)
    near = _max(speech.astype(np.float64), pad) > 0
    gated = np.where(near, gain_db, np.minimum(gain_db, 0.0))
    return _mean(gated, int(SMOOTH_S * fps) // 4)  # eased in and out within the pad


def apply_gain(samples: np.ndarray, gain_db: np.ndarray, frame: int, start: int = 0) -> np.ndarray:
    """`samples` (the clip's from sample `start` on) with the gain of each `frame`-sample frame
    applied, interpolated between frame centres; a new float32 array, clipped to [-1, 1]."""
    lo, hi = max(0, start // frame - 1), min(len(gain_db), (start + len(samples)) // frame + 2)
    centres = (np.arange(lo, hi) + 0.5) * frame - start
    per_sample = np.interp(np.arange(len(samples), dtype=np.float64), centres, gain_db[lo:hi])
    out = samples * np.power(10.0, per_sample / 20.0)
    return np.clip(out, -1.0, 1.0, out=out).astype(np.float32, copy=False)


def _max(x: np.ndarray, half: int) -> np.ndarray:
    if half < 1:
        return x
    return np.lib.stride_tricks.sliding_window_view(np.pad(x, half, mode="edge"), 2 * half + 1).max(axis=1)


def _mean(x: np.ndarray, half: int) -> np.ndarray:
    if half < 1:
        return x
    sums = np.cumsum(np.pad(x, (half + 1, half), mode="edge"))
    return (sums[2 * half + 1 :] - sums[: -2 * half - 1]) / (2 * half + 1)


def too_quiet(db: np.ndarray, speech: np.ndarray, fps: float) -> bool:
    """Whether a clip's speech lies under QUIET_SPEECH_DB: its loudest frame within ENVELOPE_S,
    at the median over the frames a detector hears as speech (`speech`; `db`: each frame's
    energy, dBFS). Such a clip is heard levelled, as long audio is."""
    heard = speech[: len(db)]
    return bool(heard.any()) and float(np.median(_max(db, int(ENVELOPE_S * fps) // 2)[heard])) < QUIET_SPEECH_DB
