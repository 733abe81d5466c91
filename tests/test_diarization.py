"""Who spoke when, on real recordings of different real speakers joined into one conversation,
through the Python API, the CLI and the OpenAI route (driven by the official client)."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import openai
import pytest
from pyannote.core import Annotation, Segment
from pyannote.metrics.diarization import DiarizationErrorRate

from harken import Settings
from harken.audio import load_audio
from harken.cues import MAX_CUE_S, MAX_LINE_CHARS, MAX_LINES, cues
from harken.diarization import parse_rttm, rttm
from harken.errors import InvalidOptionError
from harken.formats import format_transcript
from tests.live_server import live_server

RATE = 16000
# Three voices: LJ Speech's reader (twice), a LibriSpeech reader, and John F. Kennedy.
TURNS = ("LJ001-0001.flac", "2412-153948-0000.flac", "LJ001-0003.flac", "jfk.flac")
WHO = ("lj", "libri", "lj", "jfk")


def _wav(samples: np.ndarray) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return out.getvalue()


@pytest.fixture(scope="module")
def conversation(data_dir, tmp_path_factory) -> tuple[Path, Annotation]:
    gap = np.zeros(RATE // 2, np.float32)
    parts, reference, at = [], Annotation(), 0.0
    for name, who in zip(TURNS, WHO):
        samples = load_audio(data_dir / name).samples
        parts += [samples, gap]
        reference[Segment(at, at + len(samples) / RATE)] = who
        at += (len(samples) + len(gap)) / RATE
    path = tmp_path_factory.mktemp("diar") / "conversation.wav"
    path.write_bytes(_wav(np.concatenate(parts)))
    return path, reference


def _der(reference: Annotation, turns) -> float:
    hypothesis = Annotation()
    for t in turns:
        hypothesis[Segment(t.start, t.end)] = t.speaker
    return DiarizationErrorRate(collar=0.5)(reference, hypothesis)


def test_the_speakers_of_a_joined_conversation_are_told_apart(service, conversation):
    path, reference = conversation
    result = service.diarize(path)
    assert result.speakers == ("A", "B", "C")  # letters in order of first appearance
    assert _der(reference, result.turns) < 0.15
    order = [t.speaker for t in result.turns]
    assert list(dict.fromkeys(order)) == ["A", "B", "C"] and order.count("A") >= 2  # LJ comes back as A
    assert all(a.end <= b.start for a, b in zip(result.turns, result.turns[1:]))
    assert result.timings.inference_s > 0 and result.model == "ge2e-diarizer"
    again = service.diarize(path)
    assert again.timings.cache_hit and again.turns == result.turns


def test_the_number_of_speakers_can_be_given_or_bounded(service, conversation):
    path, _ = conversation
    assert service.diarize(path, num_speakers=2).speakers == ("A", "B")
    assert len(service.diarize(path, max_speakers=2).speakers) == 2
    assert len(service.diarize(path, min_speakers=4).speakers) == 4
    with pytest.raises(InvalidOptionError, match="min_speakers"):
        service.diarize(path, min_speakers=3, max_speakers=2)
    with pytest.raises(InvalidOptionError, match="num_speakers"):
        service.diarize(path, num_speakers=0)


def test_known_speakers_are_named_and_a_stranger_is_not(service, conversation, data_dir):
    path, _ = conversation
    stranger = data_dir / "61-70968-0000.flac"  # a LibriSpeech reader who is not in the conversation
    lj = load_audio(data_dir / "LJ001-0003.flac").samples[: 8 * RATE]
    result = service.diarize(path, known_speakers={"linda": lj, "stranger": stranger})
    assert result.speakers[0] == "linda" and "stranger" not in result.speakers
    assert result.speakers[1:] == ("A", "B")


@pytest.mark.parametrize("known, message", [
    ({"short": np.zeros(RATE, np.float32)}, "2-10 s"),
    ({"silent": np.zeros(4 * RATE, np.float32)}, "no speech"),
    ({f"s{i}": np.zeros(4 * RATE, np.float32) for i in range(5)}, "at most 4"),
])
def test_bad_known_speakers_are_refused(service, conversation, known, message):
    with pytest.raises(InvalidOptionError, match=message):
        service.diarize(conversation[0], known_speakers=known)


def test_no_speech_and_one_voice(service, data_dir):
    silence = service.diarize(_wav_source(np.zeros(5 * RATE, np.float32)))
    assert silence.turns == () and silence.speakers == () and silence.warnings[0].code == "no_speech"
    one = service.diarize(data_dir / "jfk.flac")
    assert one.speakers == ("A",)
    tiny = service.diarize(data_dir / "5_nicolas_46.wav", num_speakers=5)  # one spoken digit
    assert len(tiny.speakers) == 1 and any(w.code == "fewer_speakers" for w in tiny.warnings)


def _wav_source(samples: np.ndarray) -> bytes:
    return _wav(samples)


def test_transcripts_get_speakers_and_segments_never_span_two(service, conversation):
    path, reference = conversation
    transcript = service.transcribe(path, diarize=True)
    segments = transcript.segments
    assert all(s.speaker for s in segments)
    for s in segments:  # every word of a segment lies in the reference turns of one speaker
        voices = {reference.argmax(Segment(w.start, w.end)) for w in s.words or () if w.end > w.start}
        assert len(voices - {None}) <= 1, s.text
    by_text = {s.text: s.speaker for s in segments}
    kennedy = next(who for text, who in by_text.items() if "ask not" in text)
    printing = next(who for text, who in by_text.items() if text.startswith("Printing"))
    assert kennedy != printing
    assert transcript.text == " ".join(s.text for s in segments)
    assert [s.id for s in segments] == list(range(len(segments)))

    txt = format_transcript(transcript, "txt").splitlines()
    assert txt[0].startswith(f"{printing}: Printing") and any(line.startswith(f"{kennedy}: ") for line in txt)
    srt = format_transcript(transcript, "srt")
    assert f"[{printing}] Printing" in srt
    for cue in cues(segments, speaker_tags=True):
        assert cue.lines[0].startswith(f"[{cue.speaker}] ")
        assert cue.end - cue.start <= MAX_CUE_S + 1e-6 and len(cue.lines) <= MAX_LINES
        assert all(len(line) <= MAX_LINE_CHARS for line in cue.lines)
    vtt = format_transcript(transcript, "vtt")
    assert f"<v {kennedy}>" in vtt and vtt.count("<v ") == vtt.count("</v>") == len(cues(segments))


def test_cli_diarize_writes_rttm_and_transcribe_diarizes(conversation, tmp_path):
    path, reference = conversation
    env_cache = ["--no-cache"]
    out = subprocess.run([sys.executable, "-m", "harken", "diarize", str(path), *env_cache],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    turns = parse_rttm(out.stdout)["conversation"]
    assert _der(reference, turns) < 0.15
    out = subprocess.run([sys.executable, "-m", "harken", "diarize", str(path), "--num-speakers", "2", "-o", str(tmp_path)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and {t.speaker for t in parse_rttm((tmp_path / "conversation.rttm").read_text())["conversation"]} == {"A", "B"}
    bad = subprocess.run([sys.executable, "-m", "harken", "diarize", str(path), "--speaker", "nobody"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and bad.stderr.count("\n") == 1 and "NAME=FILE" in bad.stderr
    text = subprocess.run([sys.executable, "-m", "harken", "transcribe", str(path), "--diarize"],
                          capture_output=True, text=True, timeout=300)
    assert text.returncode == 0, text.stderr
    assert [line[:3] for line in text.stdout.splitlines()] == ["A: ", "B: ", "A: ", "C: "]


def test_rttm_round_trips(service, conversation):
    result = service.diarize(conversation[0])
    back = parse_rttm(rttm(result, "my file"))["my_file"]
    assert [(round(t.start, 3), round(t.end, 3), t.speaker) for t in back] == [
        (round(t.start, 3), round(t.end, 3), t.speaker) for t in result.turns]


@pytest.fixture(scope="module")
def client(cache_dir):
    with live_server(Settings.load(cache_dir=cache_dir)) as url:
        yield openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)


def _data_url(samples: np.ndarray) -> str:
    return "data:audio/wav;base64," + base64.b64encode(_wav(samples)).decode()


def test_openai_client_gets_diarized_json_with_known_speakers(client, conversation, data_dir):
    path, _ = conversation
    with open(path, "rb") as f:
        result = client.audio.transcriptions.create(model="whisper-1", file=f, response_format="diarized_json",
                                                    chunking_strategy="auto")
    assert result.task == "transcribe" and result.duration > 40
    assert [s.speaker for s in result.segments][0] == "A" and {s.speaker for s in result.segments} == {"A", "B", "C"}
    assert all(s.type == "transcript.text.segment" and s.end > s.start for s in result.segments)
    lj = load_audio(data_dir / "LJ001-0003.flac").samples[: 8 * RATE]
    with open(path, "rb") as f:
        named = client.audio.transcriptions.create(
            model="whisper-1", file=f, response_format="diarized_json",
            known_speaker_names=["linda"], known_speaker_references=[_data_url(lj)],
        )
    assert named.segments[0].speaker == "linda" and "linda" in {s.speaker for s in named.segments[2:]}
    with open(path, "rb") as f:  # any format, with harken's diarize field
        srt = client.audio.transcriptions.create(model="whisper-1", file=f, response_format="srt",
                                                 extra_body={"diarize": True})
    assert "[A] Printing" in srt


@pytest.mark.parametrize("fields, param", [
    ({"known_speaker_names": ["a"], "known_speaker_references": []}, "known_speaker_references"),
    ({"known_speaker_names": ["a"], "known_speaker_references": ["/etc/passwd"]}, "known_speaker_references"),
    ({"known_speaker_names": ["a"], "known_speaker_references": ["short"]}, "known_speaker_references"),
    ({"known_speaker_names": list("abcde"), "known_speaker_references": ["x"] * 5}, "known_speaker_names"),
    ({"stream": True}, "stream"),
])
def test_bad_diarization_requests_get_the_openai_error_shape(client, data_dir, fields, param):
    if fields.get("known_speaker_references") == ["short"]:
        fields = {**fields, "known_speaker_references": [_data_url(load_audio(data_dir / "jfk.flac").samples[:RATE])]}
    with open(data_dir / "jfk.flac", "rb") as f, pytest.raises(openai.BadRequestError) as caught:
        client.audio.transcriptions.create(model="whisper-1", file=f, response_format="diarized_json", **fields)
    error = caught.value.body
    assert error["param"] == param and error["type"] == "invalid_request_error" and error["message"]


def test_batch_with_diarized_json_diarizes(conversation, tmp_path):
    path, _ = conversation
    out = subprocess.run([sys.executable, "-m", "harken", "batch", str(path.parent), "-o", str(tmp_path), "-f", "diarized_json"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    body = json.loads((tmp_path / "conversation.diarized.json").read_text())
    assert {s["speaker"] for s in body["segments"]} == {"A", "B", "C"}
