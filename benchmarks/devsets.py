"""The development subsets every accuracy change is judged on, and how an output is scored.

Each subset is one kind of speech from ../shared/data and ../shared/data/more (see their
READMEs for sources and licences). `read-en-8k` is the read English clips passed through an
8 kHz telephone band (resampled down and back up), so the same speech is heard both ways;
`read-en-quiet` is them again with the gain set far too low (peaks at -50 dBFS), as a far
microphone or a badly set input records them.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harken.audio import SAMPLE_RATE, load_audio
from harken.diarization import parse_rttm
from tests.wer import wer


@dataclass(frozen=True)
class Clip:
    name: str
    samples: np.ndarray
    reference: str
    language: str


@dataclass(frozen=True)
class Subset:
    name: str
    what: str
    model: str  # the catalogue model it is measured with
    normaliser: str  # tests/wer.py: english or basic
    clips: tuple[Clip, ...]


@dataclass(frozen=True)
class Meeting:
    """Meeting audio with who-spoke-when (RTTM) but no word reference: what it can tell is
    where words came back while no one was speaking."""

    name: str
    samples: np.ndarray
    speech: tuple[tuple[float, float], ...]  # (start, end) s of every reference speaker turn


def load_meetings(data: Path) -> list[Meeting]:
    """The AMI excerpts of ../shared/data/more (30 s each), one by one, then all of them joined
    into one recording (a long meeting: the long-audio path)."""
    meetings = []
    for row in _rows(data / "more" / "manifest.jsonl"):
        if row["task"] != "diar":
            continue
        audio = load_audio(data / "more" / row["path"]).samples
        speech = tuple((t.start, t.end) for turns in parse_rttm(row["reference"]).values() for t in turns)
        meetings.append(Meeting(Path(row["path"]).stem, audio, speech))
    if meetings:
        offsets = np.cumsum([0.0] + [len(m.samples) / SAMPLE_RATE for m in meetings])
        joined = tuple((a + o, b + o) for m, o in zip(meetings, offsets) for a, b in m.speech)
        meetings.append(Meeting("all joined", np.concatenate([m.samples for m in meetings]), joined))
    return meetings


def words_without_speech(segments, speech: tuple[tuple[float, float], ...], margin: float = 0.5) -> int:
    """Words of the segments (anything with start, end and text) that overlap no reference speech."""
    return sum(
        len(s.text.split()) for s in segments
        if not any(s.start < b + margin and a - margin < s.end for a, b in speech)
    )


def _rows(manifest: Path) -> list[dict]:
    if not manifest.is_file():
        return []
    return [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]


QUIET_PEAK_DB = -50.0  # read-en-quiet: each clip scaled so that its loudest sample is here


def _telephone(samples: np.ndarray) -> np.ndarray:
    import soxr

    return soxr.resample(soxr.resample(samples, SAMPLE_RATE, 8000), 8000, SAMPLE_RATE).astype(np.float32)


def _too_quiet(samples: np.ndarray) -> np.ndarray:
    peak = float(np.max(np.abs(samples), initial=0.0))
    return (samples * (10 ** (QUIET_PEAK_DB / 20) / peak if peak > 0 else 1.0)).astype(np.float32)


def load_subsets(data: Path) -> list[Subset]:
    """Every subset found under `data` (../shared/data) and `data/more`; missing ones are skipped."""
    groups: dict[str, list[Clip]] = {}

    def add(group: str, root: Path, row: dict) -> None:
        audio = load_audio(root / row["path"]).samples
        groups.setdefault(group, []).append(Clip(row["path"], audio, row["reference"], row["language"]))

    for row in _rows(data / "manifest.jsonl"):
        if row["task"] != "asr":
            continue
        if row["path"].startswith("asr_en/"):
            add("read-en", data, row)
        elif row["path"].startswith("asr_multi/"):
            add("multilingual", data, row)
        elif row["path"].startswith("long/"):
            add("long-read", data, row)
    for row in _rows(data / "more" / "manifest.jsonl"):
        if row["task"] != "asr":
            continue
        source = row["path"].split("/")[1]
        if source.startswith("cmu_arctic"):
            add("read-en", data / "more", row)
        elif source == "fsdd":
            add("digits-8k", data / "more", row)
        elif source == "speech_commands_audiomate":
            add("keywords", data / "more", row)
        elif source == "sphinx4":
            add("digit-strings", data / "more", row)
    if "read-en" in groups:
        groups["read-en-8k"] = [Clip(c.name, _telephone(c.samples), c.reference, c.language) for c in groups["read-en"]]
        groups["read-en-quiet"] = [Clip(c.name, _too_quiet(c.samples), c.reference, c.language) for c in groups["read-en"]]
    described = {
        "read-en": ("read English sentences (FLEURS, LibriSpeech, LJSpeech, JFK, CMU ARCTIC)", "whisper-tiny.en", "english"),
        "read-en-8k": ("the same through an 8 kHz telephone band", "whisper-tiny.en", "english"),
        "read-en-quiet": ("the same recorded far too quietly (peaks at -50 dBFS)", "whisper-tiny.en", "english"),
        "digits-8k": ("isolated spoken digits, 8 kHz, six accented speakers (FSDD)", "whisper-tiny.en", "english"),
        "keywords": ("one-second keywords on consumer devices (Speech Commands)", "whisper-tiny.en", "english"),
        "digit-strings": ("a 15-digit string, 16 kHz and 8 kHz (CMU Sphinx), scored per digit", "whisper-tiny.en", "english"),
        "long-read": ("53 s of read verse, one file", "whisper-tiny.en", "english"),
        "multilingual": ("FLEURS German, Spanish, French, Portuguese, language not given", "whisper-base", "basic"),
    }
    return [
        Subset(name, *described[name], tuple(groups[name]))
        for name in described
        if name in groups
    ]


_WORD = re.compile(r"[\w']+")


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def repeats_phrase(hypothesis: str, reference: str, n: int = 3) -> bool:
    """Does the output say a phrase of `n` or more words more often than the reference does?

    Counts both a phrase said twice in a row ("the most obvious the most obvious") and a
    sentence said again later; a repetition the speaker made is in the reference too.
    """
    # Digits compared as digits: "1 0 0 0 1" says what "one zero zero zero one" says.
    hyp, ref = ([_DIGITS.get(w, w) for w in _words(t)] for t in (hypothesis, reference))
    grams = Counter(tuple(hyp[i : i + n]) for i in range(len(hyp) - n + 1))
    said = Counter(tuple(ref[i : i + n]) for i in range(len(ref) - n + 1))
    return any(c >= 2 and c > said[g] for g, c in grams.items())


_DIGITS = {"zero": "0", "oh": "0", "o": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
           "six": "6", "seven": "7", "eight": "8", "nine": "9"}


def score(subset: Subset, hypotheses: list[str]) -> float:
    """WER with Whisper's normaliser; digit strings by digit error rate (its normaliser merges digits into numbers)."""
    refs = [c.reference for c in subset.clips]
    if subset.name != "digit-strings":
        return wer(refs, hypotheses, subset.normaliser)
    import jiwer

    def digits(text: str) -> str:
        spelled = "".join(_DIGITS.get(w, w) for w in _words(text))
        return " ".join(ch for ch in spelled if ch.isdigit())

    return jiwer.wer([digits(r) for r in refs], [digits(h) or "-" for h in hypotheses])
