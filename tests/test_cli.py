"""The CLI as a user runs it: a real process, real files, one plain line per error."""

from __future__ import annotations

import json
import subprocess
import sys
import wave

import pytest


def run(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harken", *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_version():
    out = run("--version")
    assert out.returncode == 0 and out.stdout.startswith("harken ")


def test_transcribe_to_stdout(data_dir):
    out = run("transcribe", str(data_dir / "jfk.flac"))
    assert out.returncode == 0 and "ask not what your country" in out.stdout.lower()
    assert out.stderr == ""


def test_output_dir_json_and_srt(data_dir, tmp_path):
    files = [str(data_dir / "jfk.flac"), str(data_dir / "61-70968-0000.flac")]
    assert run("transcribe", *files, "--format", "json", "--output", str(tmp_path)).returncode == 0
    data = json.loads((tmp_path / "jfk.json").read_text())
    assert {"text", "language", "segments", "timings"} <= set(data)
    assert run("transcribe", files[1], "-f", "srt", "-o", str(tmp_path), "--word-timestamps").returncode == 0
    assert (tmp_path / "61-70968-0000.srt").read_text().startswith("1\n00:00:0")


@pytest.fixture()
def bad_inputs(tmp_path, data_dir):
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "random.wav").write_bytes(bytes(range(256)) * 20)
    (tmp_path / "text.mp3").write_text("not audio at all\n")
    (tmp_path / "truncated.flac").write_bytes((data_dir / "jfk.flac").read_bytes()[:60000])
    with wave.open(str(tmp_path / "header.wav"), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
    return [tmp_path / n for n in ("missing.wav", "empty.wav", "random.wav", "text.mp3", "truncated.flac", "header.wav")]


def test_bad_files_get_one_line_each_and_the_good_ones_still_run(bad_inputs, data_dir, tmp_path):
    outdir = tmp_path / "out"
    good = data_dir / "61-70968-0000.flac"
    out = run("transcribe", *map(str, bad_inputs), str(good), "-f", "json", "-o", str(outdir))
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == len(bad_inputs) and all(line.startswith("harken: error: ") for line in lines)
    assert "Traceback" not in out.stderr
    assert sorted(p.name for p in outdir.iterdir()) == ["61-70968-0000.json"]


@pytest.mark.parametrize(
    "args,message",
    [
        (["--model", "whisper-huge"], "unknown model 'whisper-huge'"),
        (["--format", "docx"], "unknown format 'docx'"),
        (["--beam-size", "0"], "beam_size must be between"),
        (["--task", "summarise"], "task must be transcribe or translate"),
        (["--long-form", "maybe"], "long_form must be"),
        (["--frobnicate"], "No such option"),
    ],
)
def test_bad_options_one_line_nonzero_and_nothing_written(data_dir, tmp_path, args, message):
    out = run("transcribe", str(data_dir / "jfk.flac"), "-o", str(tmp_path / "out"), *args)
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1 and message in out.stderr
    assert not (tmp_path / "out").exists()


def test_models_lists_the_catalogue():
    out = run("models", "--json")
    rows = {r["name"]: r for r in json.loads(out.stdout)}
    assert rows["whisper-tiny.en"]["installed"] and "tiny.en" in rows["whisper-tiny.en"]["aliases"]
    assert "whisper-base" in rows
    table = run("models")
    assert "whisper-tiny.en" in table.stdout and "installed" in table.stdout


def test_a_one_shot_command_skips_the_warm_up_unless_the_settings_ask(monkeypatch, data_dir):
    """A warm-up serves a server's first request and pays for itself over a few clips in a row;
    a command that runs once on one input would only pay it on top. Asked for (HARKEN_WARMUP,
    harken.toml), or given several inputs or a folder, it still runs."""
    from harken.cli import _one_shot

    one = str(data_dir / "jfk.flac")
    assert _one_shot(None).warmup is False and _one_shot(None, [one]).warmup is False
    assert _one_shot(None, ["-"]).warmup is False
    assert _one_shot(None, [one, one]).warmup is True and _one_shot(None, [str(data_dir)]).warmup is True
    monkeypatch.setenv("HARKEN_WARMUP", "true")
    assert _one_shot(None, [one]).warmup is True
