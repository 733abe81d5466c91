"""The Python API: load_model, transcribe_file, transcribe_files."""

from __future__ import annotations

import pytest

import harken
from harken.errors import UnknownModelError


def test_transcribe_file_shape(data_dir):
    result = harken.transcribe_file(data_dir / "61-70968-0000.flac", max_new_tokens=64)
    assert {"file", "text", "language", "segments", "tokens_generated", "elapsed_sec", "timings"} <= set(result)
    assert result["file"].endswith("61-70968-0000.flac") and "wizard" in result["text"].lower()
    assert result["tokens_generated"] > 5 and result["elapsed_sec"] > 0
    assert isinstance(result["segments"][0]["start"], float)


def test_max_new_tokens_limits_generation(data_dir):
    short = harken.transcribe_file(data_dir / "2412-153948-0000.flac", max_new_tokens=5)
    assert 0 < short["tokens_generated"] <= 5


def test_transcribe_files_keeps_order_and_reports_bad_files(data_dir, tmp_path):
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF....garbage")
    paths = [data_dir / "jfk.flac", bad, tmp_path / "missing.flac", data_dir / "61-70968-0000.flac"]
    results = harken.transcribe_files(paths)
    assert [r["file"] for r in results] == [str(p) for p in paths]
    assert "country" in results[0]["text"] and "wizard" in results[3]["text"].lower()
    assert results[1]["error"]["type"] == "unsupported_audio"
    assert results[2]["error"]["type"] == "audio_not_found"


def test_load_model_returns_a_usable_handle(data_dir):
    model = harken.load_model("tiny.en")
    assert model.name == "whisper-tiny.en"
    assert "Americans" in model.transcribe(data_dir / "jfk.flac").text
    with pytest.raises(UnknownModelError):
        harken.load_model("no-such-model")
