"""The server as an attacker meets it: hostile uploads, paths, URLs, models and keys each get a
clear 4xx in the OpenAI shape, and the server stays up, responsive and bounded."""

from __future__ import annotations

import http.client
import http.server
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlparse

import httpx
import numpy as np
import pytest

from harken import Settings
from harken.server import create_app
from tests import hostile
from tests.live_server import live_server
from tests.test_server import _assert_envelope


class _SlowOrigin(http.server.BaseHTTPRequestHandler):
    """An origin that promises a big body and sends one byte a second."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.send_response(200)
        self.send_header("Content-Length", "100000")
        self.end_headers()
        try:
            for _ in range(60):
                self.wfile.write(b"\0")
                self.wfile.flush()
                time.sleep(1)
        except OSError:
            pass

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def slow_origin():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _SlowOrigin)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/clip.wav"
    server.shutdown()


@pytest.fixture(scope="module")
def root(tmp_path_factory, data_dir) -> Path:
    """An allowed root: a clip, an evaluation set with a FIFO label and symlinks to outside."""
    root = tmp_path_factory.mktemp("root")
    (root / "jfk.flac").write_bytes((data_dir / "jfk.flac").read_bytes())
    outside = tmp_path_factory.mktemp("outside")
    (outside / "secret.txt").write_text("the launch codes\n")
    (outside / "secret.flac").write_bytes((data_dir / "61-70968-0000.flac").read_bytes())
    audio, labels = root / "eval" / "audio", root / "eval" / "labels"
    audio.mkdir(parents=True), labels.mkdir(parents=True)
    for stem in ("jfk", "fifo", "leak", "away"):
        (audio / f"{stem}.flac").write_bytes((data_dir / "jfk.flac").read_bytes())
    (labels / "jfk.txt").write_text("And so my fellow Americans ask not what your country can do for you\n")
    os.mkfifo(labels / "fifo.txt")
    os.symlink(outside / "secret.txt", labels / "leak.txt")
    (audio / "away.flac").unlink()
    os.symlink(outside / "secret.flac", audio / "away.flac")
    (labels / "away.txt").write_text("anything\n")
    models = root / "models"
    models.mkdir()
    return root


@pytest.fixture(scope="module")
def server(cache_dir, root, slow_origin):
    settings = Settings.load(
        cache_dir=cache_dir, allowed_media_roots=[root], allowed_url_domains=["127.0.0.1"], max_audio_s=60,
        server={"url_timeout_s": 6.0},
    )
    with live_server(settings) as url:
        yield url


def _upload(url: str, name: str, data: bytes, **form) -> httpx.Response:
    return httpx.post(url + "/v1/audio/transcriptions", files={"file": (name, data)}, data=form, timeout=60)


# --- uploads --------------------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [8, 64])
def test_many_channel_uploads_transcribe_and_the_server_lives(server, channels):
    response = _upload(server, "many.wav", hostile.wav(hostile.channel_ramp(channels)), response_format="verbose_json")
    assert response.status_code == 200, response.text
    assert response.json()["duration"] == pytest.approx(0.5, abs=0.01)
    assert httpx.get(server + "/healthz").json()["status"] == "ok"


def test_nan_and_infinite_samples_give_valid_json(server):
    x = (0.1 * np.random.default_rng(0).standard_normal((16_000, 1))).astype(np.float32)
    x[::7] = np.nan
    x[::11] = np.inf
    response = _upload(server, "nan.wav", hostile.wav(x), response_format="verbose_json")
    assert response.status_code == 200, response.text
    json.loads(response.text)  # strict JSON: no NaN or Infinity anywhere
    _assert_envelope(_upload(server, "nan.wav", hostile.wav(np.full((8000, 1), np.nan, np.float32))), 415)


def test_a_decompression_bomb_is_refused_early(server):
    bomb = hostile.flac_without_length(1800)  # 30 minutes in 0.3 MB, length not declared
    start = time.perf_counter()
    error = _assert_envelope(_upload(server, "bomb.flac", bomb), 413, "audio_too_long")
    assert "60 s limit" in error["message"]
    assert time.perf_counter() - start < 3  # stopped after a minute of audio, not all thirty


def test_control_characters_and_nothing_to_say_are_refused_before_any_audio(server):
    for text in ("\u0000", "\u0007\u0001", "..."):
        response = httpx.post(server + "/v1/audio/speech", json={"input": text, "voice": "alloy"}, timeout=60)
        _assert_envelope(response, 400, "invalid_option")
    spoken = httpx.post(server + "/v1/audio/speech", json={"input": "Hello\u0000 there.", "response_format": "wav"}, timeout=60)
    assert spoken.status_code == 200 and spoken.content[:4] == b"RIFF" and len(spoken.content) > 10_000


# --- a bug's 500 keeps the connection -------------------------------------------------------------


def test_after_a_500_the_same_connection_serves_the_next_request(cache_dir):
    app = create_app(Settings.load(cache_dir=cache_dir))

    @app.get("/boom")
    async def boom() -> dict:  # a route with a bug in it
        raise RuntimeError("a bug")

    with live_server(app.state.harken.settings, app) as url:
        parsed = urlparse(url)
        conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=10)
        conn.request("GET", "/boom")
        first = conn.getresponse()
        body = json.loads(first.read())
        sock = conn.sock
        conn.request("GET", "/healthz")  # http.client does not reconnect: a reset would raise here
        second = conn.getresponse()
        second.read()
        same = conn.sock is sock
        conn.close()
    assert first.status == 500 and body["error"]["code"] == "internal_error" and "bug" not in json.dumps(body)
    assert second.status == 200 and same


# --- paths ----------------------------------------------------------------------------------------


def test_evaluate_reads_only_regular_files_inside_the_roots(server, root):
    response = httpx.post(server + "/evaluate", json={"audio_dir": str(root / "eval" / "audio"),
                                                      "gt_dir": str(root / "eval" / "labels")}, timeout=60)
    assert response.status_code == 200, response.text
    report = response.json()
    assert "launch codes" not in response.text
    problems = " | ".join(report["problems"])
    assert "fifo.txt: not a regular file" in problems and "leak.txt: outside the allowed media roots" in problems
    by_name = {Path(d["path"]).name: d for d in report["details"]}
    assert set(by_name) == {"jfk.flac", "away.flac"}
    assert by_name["jfk.flac"]["hypothesis"]
    assert by_name["away.flac"]["hypothesis"] is None and "outside the allowed media roots" in by_name["away.flac"]["error"]["message"]


@pytest.mark.parametrize(
    "route,body",
    [
        ("/transcribe", {"paths": ["{root}/jfk\u0000.flac"]}),
        ("/transcribe", {"paths": ["file://{root}/jfk%00.flac"]}),
        ("/evaluate", {"audio_dir": "{root}/eval\u0000", "gt_dir": "{root}/eval/labels"}),
        ("/v1/jobs", {"inputs": ["{root}/jfk.flac\u0000"]}),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "audio_path": "{root}/\u0000"}),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": [
            {"type": "audio_url", "audio_url": {"url": "file://{root}/a%00b.wav"}}]}]}),
    ],
)
def test_a_nul_byte_in_any_path_is_a_400(server, root, route, body):
    text = json.dumps(body).replace("{root}", str(root))
    response = httpx.post(server + route, content=text, headers={"content-type": "application/json"}, timeout=30)
    assert "NUL" in _assert_envelope(response, 400, "invalid_option")["message"]


def test_local_files_are_capped_like_uploads(cache_dir, root):
    (root / "big.wav").write_bytes(hostile.wav(hostile.channel_ramp(1, seconds=3)))  # 96 kB
    (root / "small.wav").write_bytes(hostile.wav(hostile.channel_ramp(1, seconds=0.5)))  # 16 kB
    settings = Settings.load(cache_dir=cache_dir, allowed_media_roots=[root], server={"max_upload_mb": 0.05})
    with live_server(settings) as url:
        response = httpx.post(url + "/transcribe", json={"paths": [str(root / "big.wav"), str(root / "small.wav")]}, timeout=60)
    big, small = response.json()["results"]
    assert big["error"]["type"] == "payload_too_large" and "error" not in small


# --- URLs -----------------------------------------------------------------------------------------


def test_slow_origins_are_cut_off_whole_and_hold_up_no_other_work(server, slow_origin, data_dir):
    start = time.perf_counter()
    with ThreadPoolExecutor(6) as pool:
        slow = [pool.submit(httpx.post, server + "/transcribe", json={"paths": [slow_origin] * 4}, timeout=60)
                for _ in range(6)]
        time.sleep(0.3)
        upload = _upload(server, "jfk.flac", (data_dir / "jfk.flac").read_bytes())
        # Fetches wait on the network, not on a thread the upload needs.
        assert upload.status_code == 200 and not any(f.done() for f in slow)
        results = [r for f in slow for r in f.result().json()["results"]]
    assert len(results) == 24
    assert all(r["error"]["type"] == "audio_not_found" and "within 6 s" in r["error"]["message"] for r in results)
    assert time.perf_counter() - start < 15  # each fetch had 6 s in all, not 6 s per read


# --- models ---------------------------------------------------------------------------------------


def test_clients_name_catalogue_models_only(server, root, cache_dir):
    from harken.registry import Registry

    model_dir = str(Registry(Settings.load(cache_dir=cache_dir)).resolve("tiny.en").source.resolve(cache_dir))
    for model in (model_dir, "/etc", "/nonexistent", "~root", "~no-such-user", "a\u0000b"):
        response = _upload(server, "jfk.flac", (root / "jfk.flac").read_bytes(), model=model)
        assert response.status_code == 404 and response.json()["error"]["code"] == "model_not_found"
    etc, nothing = httpx.get(server + "/v1/models//etc"), httpx.get(server + "/v1/models//nonexistent")
    _assert_envelope(etc, 404, "model_not_found"), _assert_envelope(nothing, 404, "model_not_found")
    assert etc.json()["error"]["message"].replace("/etc", "X") == nothing.json()["error"]["message"].replace("/nonexistent", "X")
    _assert_envelope(httpx.get(server + "/v1/models/~x"), 404, "model_not_found")
    assert all(not name.startswith("/") for name in httpx.get(server + "/healthz").json()["models_loaded"])


def test_model_roots_let_the_operator_allow_directories(cache_dir, tmp_path, data_dir):
    import shutil

    from harken.registry import Registry

    bundled = Registry(Settings.load(cache_dir=cache_dir)).resolve("tiny.en").source.resolve(cache_dir)
    shutil.copytree(bundled, tmp_path / "models" / "mine")
    settings = Settings.load(cache_dir=cache_dir, server={"model_roots": [tmp_path / "models"]})
    with live_server(settings) as url:
        allowed = _upload(url, "jfk.flac", (data_dir / "jfk.flac").read_bytes(), model=str(tmp_path / "models" / "mine"))
        elsewhere = _upload(url, "jfk.flac", (data_dir / "jfk.flac").read_bytes(), model=str(bundled))
        health = httpx.get(url + "/healthz").json()
    assert allowed.status_code == 200 and "country" in allowed.json()["text"]
    assert elsewhere.status_code == 404 and elsewhere.json()["error"]["code"] == "model_not_found"
    assert not any(str(tmp_path) in name for name in health["models_loaded"])


def test_jobs_take_no_schema_paths(server, root):
    body = {"inputs": [str(root / "jfk.flac")], "task": "analyze", "options": {"schema": "/etc/passwd"}}
    _assert_envelope(httpx.post(server + "/v1/jobs", json=body), 400, "invalid_option")


# --- keys -----------------------------------------------------------------------------------------


def test_failed_keys_are_rate_limited_and_duplicate_headers_refused(cache_dir):
    settings = Settings.load(cache_dir=cache_dir, warmup=False, api_keys=["right"], server={"auth_failures_per_minute": 3})
    with live_server(settings) as url:
        twice = httpx.get(url + "/v1/models", headers=[("Authorization", "Bearer right"), ("Authorization", "Bearer right")])
        assert "more than one" in _assert_envelope(twice, 401, "invalid_api_key")["message"]
        wrong = [httpx.get(url + "/v1/models", headers={"Authorization": "Bearer guess"}) for _ in range(2)]
        assert all(r.status_code == 401 for r in wrong)
        locked = httpx.get(url + "/v1/models", headers={"Authorization": "Bearer guess"})
        even_right = httpx.get(url + "/v1/models", headers={"Authorization": "Bearer right"})
        assert httpx.get(url + "/healthz").status_code == 200  # health checks are never refused
    _assert_envelope(locked, 429, "rate_limit_exceeded")
    assert 1 <= int(locked.headers["retry-after"]) <= 20
    _assert_envelope(even_right, 429)  # a lockout holds for every key, so it cannot confirm a guess


def test_405_says_which_methods_are_allowed(server):
    response = httpx.put(server + "/v1/models")
    _assert_envelope(response, 405)
    assert response.headers["allow"] == "GET"
    jobs = httpx.patch(server + "/v1/jobs/job_x")
    assert jobs.status_code == 405 and jobs.headers["allow"] == "GET, DELETE"


def test_a_job_naming_one_file_twice_runs_it_once(server, root):
    clip = str(root / "jfk.flac")
    job = httpx.post(server + "/v1/jobs", json={"inputs": [clip, "file://" + clip, clip]}).json()
    deadline = time.monotonic() + 60
    while (info := httpx.get(f"{server}/v1/jobs/{job['id']}").json())["status"] != "done":
        assert time.monotonic() < deadline, info
        time.sleep(0.2)
    assert info["total"] == 1 and info["done"] == 1
    rows = [json.loads(line) for line in httpx.get(f"{server}/v1/jobs/{job['id']}/results").text.splitlines()]
    assert len(rows) == 1 and rows[0]["status"] == "done" and "country" in rows[0]["result"]["text"]
