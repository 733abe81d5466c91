"""Output writers, one registry shared by every front door: txt, json, verbose_json, srt, vtt,
diarized_json. Speakers, when a transcript has them, are rendered here and computed elsewhere."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Callable

from harken.cues import cues
from harken.errors import HarkenError, InvalidOptionError
from harken.results import Transcript

__all__ = [
    "Writer",
    "WRITERS",
    "get_writer",
    "format_transcript",
    "verbose_json",
    "openai_json",
    "diarized_json",
    "needs_speakers",
    "file_record",
    "file_error",
]


@dataclass(frozen=True)
class Writer:
    name: str
    extension: str
    media_type: str
    render: Callable[[Transcript], str]


def _timestamp(seconds: float, decimal: str) -> str:
    ms = max(0, round(seconds * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{decimal}{ms:03d}"


def _srt(t: Transcript) -> str:
    blocks = [
        f"{i}\n{_timestamp(c.start, ',')} --> {_timestamp(c.end, ',')}\n" + "\n".join(c.lines) + "\n"
        for i, c in enumerate(cues(t.segments, speaker_tags=True), start=1)
    ]
    return "\n".join(blocks)


def _vtt(t: Transcript) -> str:
    blocks = [f"{_timestamp(c.start, '.')} --> {_timestamp(c.end, '.')}\n" + _voice(c) + "\n" for c in cues(t.segments)]
    return "WEBVTT\n\n" + "\n".join(blocks)


def _voice(c) -> str:
    """A cue's lines, in a WebVTT voice span when its speaker is known (`<v A>...</v>`)."""
    text = "\n".join(c.lines)
    if c.speaker is None:
        return text
    name = c.speaker.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return f"<v {name}>{text}</v>"


def _txt(t: Transcript) -> str:
    """One line per segment, as Whisper's own writer does: a long recording reads as lines, not one.
    Diarized, one line per speaker turn, begun with the speaker ("A: ...")."""
    if any(s.speaker for s in t.segments):
        turns: list[list[str]] = []
        for s in t.segments:
            if not s.text.strip():
                continue
            if turns and turns[-1][0] == s.speaker:
                turns[-1].append(s.text.strip())
            else:
                turns.append([s.speaker or "?", s.text.strip()])
        return "".join(f"{who}: {' '.join(texts)}\n" for who, *texts in turns)
    lines = [s.text.strip() for s in t.segments if s.text.strip()]
    return "\n".join(lines or [t.text]) + "\n"


def _json(t: Transcript) -> str:
    return json.dumps(t.to_dict(), ensure_ascii=False, indent=2) + "\n"


def verbose_json(t: Transcript) -> dict:
    """The OpenAI `verbose_json` transcription object."""
    out: dict = {
        "task": t.task,
        "language": t.language,
        "duration": round(t.duration, 3),
        "text": t.text,
        "segments": [
            {
                "id": s.id,
                "seek": 0,
                "start": s.start,
                "end": s.end,
                "text": s.text,
                "tokens": list(s.tokens),
                "temperature": s.temperature,
                "avg_logprob": s.avg_logprob,
                "compression_ratio": s.compression_ratio,
                "no_speech_prob": s.no_speech_prob,
                **({"speaker": s.speaker} if s.speaker is not None else {}),
            }
            for s in t.segments
        ],
    }
    if t.warnings:
        out["warnings"] = [asdict(w) for w in t.warnings]
    if any(s.words for s in t.segments):
        out["words"] = [{"word": w.word.strip(), "start": w.start, "end": w.end} for s in t.segments for w in s.words or ()]
    return out


def openai_json(t: Transcript) -> dict:
    """The OpenAI `json` transcription object, plus harken's timings (clients ignore extra keys)."""
    out = {"text": t.text, "usage": {"type": "duration", "seconds": round(t.duration, 3)}, "timings": t.timings.to_dict()}
    if t.warnings:
        out["warnings"] = [asdict(w) for w in t.warnings]
    return out


def diarized_json(t: Transcript) -> dict:
    """The OpenAI `diarized_json` transcription object (TranscriptionDiarized): segments with
    their speaker, plus harken's timings and warnings."""
    out: dict = {
        "task": "transcribe",
        "duration": round(t.duration, 3),
        "text": t.text,
        "segments": [
            {"type": "transcript.text.segment", "id": f"seg_{s.id:03d}", "start": s.start, "end": s.end,
             "text": s.text, "speaker": s.speaker or "A"}
            for s in t.segments if s.text
        ],
        "usage": {"type": "duration", "seconds": round(t.duration, 3)},
        "timings": t.timings.to_dict(),
    }
    if t.warnings:
        out["warnings"] = [asdict(w) for w in t.warnings]
    return out


def file_record(file: str, t: Transcript) -> dict:
    """One file's result in the Python API and the native /transcribe route."""
    return {"file": file, **t.to_dict(), "elapsed_sec": round(t.timings.total_s, 4)}


def file_error(file: str, exc: HarkenError) -> dict:
    """One file's failure in the same places: the others in the request still run."""
    return {"file": file, "error": {"type": exc.code, "message": exc.message}}


WRITERS: dict[str, Writer] = {
    w.name: w
    for w in (
        Writer("txt", "txt", "text/plain; charset=utf-8", _txt),
        Writer("json", "json", "application/json", _json),
        Writer("verbose_json", "verbose.json", "application/json", lambda t: json.dumps(verbose_json(t), ensure_ascii=False, indent=2) + "\n"),
        Writer("srt", "srt", "application/x-subrip; charset=utf-8", _srt),
        Writer("vtt", "vtt", "text/vtt; charset=utf-8", _vtt),
        Writer("diarized_json", "diarized.json", "application/json",
               lambda t: json.dumps(diarized_json(t), ensure_ascii=False, indent=2) + "\n"),
    )
}


def needs_speakers(name: str) -> bool:
    """Whether a format only makes sense diarized (every front door asks this one place)."""
    return name == "diarized_json"


def get_writer(name: str) -> Writer:
    try:
        return WRITERS[name]
    except KeyError:
        raise InvalidOptionError(f"unknown format {name!r} (choose from {', '.join(WRITERS)})", param="format") from None


def format_transcript(transcript: Transcript, name: str) -> str:
    return get_writer(name).render(transcript)
