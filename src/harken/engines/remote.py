"""Any OpenAI-compatible upstream (vLLM, vllm-omni, another harken) as a chat engine.

This is how harken serves models bigger than one machine: the upstream runs the model, harken
routes, caches, segments, validates and speaks. Requests go round-robin over the base URLs; an
upstream that fails to connect or answers 5xx is skipped for `down_s` seconds and the request
retried on the next one, with exponential backoff. Audio travels as `input_audio` (base64 WAV).
Structured output is asked of the upstream as `response_format` json_schema and validated here.
"""

from __future__ import annotations

import base64
import io
import itertools
import json
import threading
import time
import wave
from typing import Any

import numpy as np

from harken.engines.base import Capability
from harken.engines.chat import AudioPart, ChatMessage, ChatOptions, EngineReply, OnText
from harken.errors import HarkenError, ModelError, ModelLoadError, UpstreamError, require

__all__ = ["RemoteEngine"]


class RemoteEngine:
    capabilities = Capability.CHAT
    batches = False
    prompt_free_caption = False

    def __init__(self, urls: tuple[str, ...], *, default_model: str, options: dict[str, Any] | None = None) -> None:
        import httpx

        options = options or {}
        if not urls:
            raise ModelLoadError("a remote model needs at least one base URL")
        self.urls = tuple(u if u.endswith("/v1") else u + "/v1" for u in urls)
        self.model = str(options.get("model", default_model))
        self.window_s = float(options.get("window_s", 30.0))
        self.retries = int(options.get("retries", 2))
        self.backoff_s = float(options.get("backoff_s", 0.2))
        self.down_s = float(options.get("down_s", 10.0))
        self.prompt_free_caption = bool(options.get("captioner", False))
        key = options.get("api_key")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.http = httpx.Client(timeout=float(options.get("timeout_s", 120.0)), headers=headers)
        self._order = itertools.cycle(range(len(self.urls)))
        self._down_until = [0.0] * len(self.urls)
        self._lock = threading.Lock()

    def warmup(self) -> None:
        """A health check: at least one upstream must answer /models."""
        for i, url in enumerate(self.urls):
            try:
                if self.http.get(url + "/models", timeout=5.0).status_code == 200:
                    return
            except Exception:  # any transport failure: this upstream is down
                pass
            self._down_until[i] = time.monotonic() + self.down_s
        raise UpstreamError(f"no upstream of {self.model!r} is reachable ({', '.join(self.urls)})")

    def close(self) -> None:
        self.http.close()

    def chat(self, messages: list[ChatMessage], options: ChatOptions, on_text: OnText | None = None) -> EngineReply:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [_message(m) for m in messages],
            "max_tokens": options.max_new_tokens,
            "temperature": options.temperature,
            "top_p": options.top_p,
        }
        if options.top_k:
            body["top_k"] = options.top_k  # vLLM and harken accept it; OpenAI ignores unknown sampling keys
        if options.seed is not None:
            body["seed"] = options.seed
        if options.json_schema is not None:
            schema = json.loads(options.json_schema)
            body["response_format"] = (
                {"type": "json_object"} if schema == {} else
                {"type": "json_schema", "json_schema": {"name": "harken", "schema": schema, "strict": True}}
            )
        if on_text is not None:
            body.update(stream=True, stream_options={"include_usage": True})
        reply = self._send(body, on_text)
        if options.json_schema is not None:
            _validate(reply.text, json.loads(options.json_schema))
        return reply

    def _send(self, body: dict[str, Any], on_text: OnText | None) -> EngineReply:
        import httpx

        last = "no upstream tried"
        for attempt in range(self.retries + 1):
            index = self._pick()
            url = self.urls[index] + "/chat/completions"
            streamed = False
            try:
                if on_text is None:
                    response = self.http.post(url, json=body)
                    if response.status_code < 500:
                        return _reply(_checked(response))
                    last = f"HTTP {response.status_code}"
                else:
                    with self.http.stream("POST", url, json=body) as response:
                        if response.status_code < 500:
                            if response.status_code >= 400:
                                response.read()
                                _checked(response)
                            streamed = True  # from here a failure cannot be retried: text went out
                            return _read_stream(response, on_text)
                        last = f"HTTP {response.status_code}"
            except httpx.TransportError as exc:
                if streamed:
                    raise UpstreamError(f"the upstream stream broke: {type(exc).__name__}") from None
                last = type(exc).__name__
            with self._lock:
                self._down_until[index] = time.monotonic() + self.down_s
            time.sleep(self.backoff_s * (2**attempt))
        raise UpstreamError(f"upstreams of {self.model!r} failed ({last}) after {self.retries + 1} tries")

    def _pick(self) -> int:
        with self._lock:
            now = time.monotonic()
            for _ in range(len(self.urls)):
                i = next(self._order)
                if self._down_until[i] <= now:
                    return i
            return min(range(len(self.urls)), key=lambda i: self._down_until[i])  # all down: the soonest back


def _message(m: ChatMessage) -> dict[str, Any]:
    parts = []
    for p in m.parts:
        if isinstance(p, AudioPart):
            parts.append({"type": "input_audio", "input_audio": {"data": _wav_base64(p.samples), "format": "wav"}})
        else:
            parts.append({"type": "text", "text": p.text})
    if m.role != "user" and all(part["type"] == "text" for part in parts):
        return {"role": m.role, "content": "".join(part["text"] for part in parts)}
    return {"role": m.role, "content": parts}


def _wav_base64(samples: np.ndarray) -> str:
    pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2").tobytes()
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16_000)
        w.writeframes(pcm)
    return base64.b64encode(buffer.getvalue()).decode()


def _checked(response) -> dict[str, Any]:
    """The JSON body of a 2xx; an upstream 4xx becomes the same error here, with its message."""
    try:
        data = response.json()
    except ValueError:
        data = {}
    if response.status_code >= 400:
        error = data.get("error", {}) if isinstance(data, dict) else {}
        err = HarkenError(f"upstream: {error.get('message') or f'HTTP {response.status_code}'}", param=error.get("param"))
        err.status, err.code = response.status_code, error.get("code") or "upstream_error"
        err.type = error.get("type") or "invalid_request_error"
        raise err
    return data


def _reply(data: dict[str, Any]) -> EngineReply:
    choice = data["choices"][0]
    usage = data.get("usage") or {}
    return EngineReply(
        choice["message"].get("content") or "",
        "length" if choice.get("finish_reason") == "length" else "stop",
        int(usage.get("prompt_tokens", 0)),
        int(usage.get("completion_tokens", 0)),
    )


def _read_stream(response, on_text: OnText) -> EngineReply:
    text, finish, usage = [], "stop", {}
    for line in response.iter_lines():
        if not line.startswith("data:"):
            continue
        payload = line[5:].strip()
        if payload == "[DONE]":
            break
        event = json.loads(payload)
        if "error" in event:
            raise UpstreamError(f"upstream: {event['error'].get('message', 'stream failed')}")
        usage = event.get("usage") or usage
        for choice in event.get("choices", []):
            delta = choice.get("delta", {}).get("content")
            if delta:
                text.append(delta)
                on_text(delta)
            if choice.get("finish_reason"):
                finish = "length" if choice["finish_reason"] == "length" else "stop"
    return EngineReply("".join(text), finish, int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0)))


def _validate(text: str, schema: dict[str, Any]) -> None:
    jsonschema = require("jsonschema", "alm", "checking a JSON answer")

    try:
        jsonschema.validate(json.loads(text), schema)
    except (ValueError, jsonschema.ValidationError):
        raise ModelError("the upstream's answer does not match the requested JSON schema") from None

