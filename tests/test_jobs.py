"""Async jobs over HTTP: progress, results, cancellation, restart, signed webhooks."""

from __future__ import annotations

import http.server
import json
import shutil
import threading
import time

import httpx
import pytest

from harken import Settings
from harken.batch.jobs import sign
from tests.live_server import live_server

SECRET = "s3cret-for-tests"
CLIPS = ["jfk.flac", "61-70968-0000.flac", "LJ001-0001.flac", "fleurs-en-003.ogg", "2412-153948-0000.flac"]


class _Receiver(http.server.BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):  # noqa: N802 (the stdlib's name)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Receiver.received.append((dict(self.headers), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver():
    _Receiver.received = []
    server = http.server.HTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook", _Receiver.received
    server.shutdown()


@pytest.fixture
def media(tmp_path, data_dir):
    root = tmp_path / "media"
    root.mkdir()
    for k in range(2):
        for name in CLIPS:
            stem, ext = name.rsplit(".", 1)
            shutil.copy(data_dir / name, root / f"{stem}-{k}.{ext}")
    (root / "broken.wav").write_bytes(b"RIFF not audio")
    return root


def _settings(cache_dir, media, tmp_path, **server):
    return Settings.load(cache_dir=cache_dir, allowed_media_roots=[media], result_cache={"memory_items": 0},
                         server={"jobs_dir": tmp_path / "jobs", "webhook_hosts": ["127.0.0.1"], "webhook_secret": SECRET, **server})


def _wait(url, job_id, statuses, timeout=120):
    deadline = time.monotonic() + timeout
    while True:
        info = httpx.get(f"{url}/v1/jobs/{job_id}").json()
        if info["status"] in statuses:
            return info
        assert time.monotonic() < deadline, info
        time.sleep(0.1)


def test_job_runs_reports_and_signs_its_webhook(cache_dir, media, tmp_path, receiver):
    hook, received = receiver
    inputs = [str(media / "jfk-0.flac"), str(media / "broken.wav"), str(media / "LJ001-0001-0.flac")]
    with live_server(_settings(cache_dir, media, tmp_path)) as url:
        job = httpx.post(url + "/v1/jobs", json={"inputs": inputs, "webhook_url": hook}).json()
        assert job["status"] in ("queued", "running") and job["total"] == 3
        info = _wait(url, job["id"], {"done"})
        assert (info["done"], info["failed"]) == (2, 1)
        lines = [json.loads(line) for line in httpx.get(f"{url}/v1/jobs/{job['id']}/results").text.splitlines()]
        deadline = time.monotonic() + 30
        while not received and time.monotonic() < deadline:
            time.sleep(0.1)
    assert [row["input"] for row in lines] == inputs
    assert "country" in lines[0]["result"]["text"] and lines[1]["status"] == "failed" and lines[1]["error"]
    headers, body = received[0]
    assert headers["X-Harken-Signature"] == "sha256=" + sign(SECRET, body, headers["X-Harken-Timestamp"])
    assert json.loads(body)["id"] == job["id"] and json.loads(body)["status"] == "done"


def test_job_requests_are_checked(cache_dir, media, tmp_path):
    with live_server(_settings(cache_dir, media, tmp_path)) as url:
        outside = httpx.post(url + "/v1/jobs", json={"inputs": ["/etc/hostname"]})
        bad_hook = httpx.post(url + "/v1/jobs", json={"inputs": [str(media / "jfk-0.flac")], "webhook_url": "http://evil.example/x"})
        bad_task = httpx.post(url + "/v1/jobs", json={"inputs": [str(media / "jfk-0.flac")], "task": "dance"})
        missing = httpx.get(url + "/v1/jobs/job_nope")
    assert outside.status_code == 403 and bad_hook.status_code == 403 and bad_task.status_code == 400
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "job_not_found"


def test_cancel_and_restart(cache_dir, media, tmp_path):
    many = [str(p) for p in sorted(media.iterdir()) if p.suffix != ".wav"]
    settings = _settings(cache_dir, media, tmp_path)
    with live_server(settings) as url:
        cancelled = httpx.post(url + "/v1/jobs", json={"inputs": many}).json()
        httpx.delete(f"{url}/v1/jobs/{cancelled['id']}")
        info = _wait(url, cancelled["id"], {"cancelled"})
        kept = httpx.post(url + "/v1/jobs", json={"inputs": many}).json()
        deadline = time.monotonic() + 60
        while httpx.get(f"{url}/v1/jobs/{kept['id']}").json()["done"] < 2:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    # The server stopped with the job in flight; a new one picks it up where it stopped.
    with live_server(settings) as url:
        final = _wait(url, kept["id"], {"done"})
        again = httpx.get(f"{url}/v1/jobs/{cancelled['id']}").json()
        lines = httpx.get(f"{url}/v1/jobs/{kept['id']}/results").text.splitlines()
    assert final["done"] == len(many) and final["failed"] == 0 and len(lines) == len(many)
    assert again["status"] == "cancelled" and again["done"] < len(many)
    assert info["status"] == "cancelled"
