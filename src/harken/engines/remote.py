"""Any OpenAI-compatible upstream (vLLM, vllm-omni, another harken) as a chat engine.

This is how harken serves models bigger than one machine: the upstream runs the model, harken
routes, caches, segments, validates and speaks. Requests go round-robin over the base URLs; an
upstream that fails to connect or answers 5xx is skipped for `down_s` seconds and the request
retried on the next one, with exponential backoff. Audio travels as `input_audio` (base64 WAV).

What the upstream is matters in two places, both learnt from its `/v1/models`:
- Structured output. A stock vLLM's xgrammar allows free whitespace in JSON, and a weak model
  then writes newlines until max_tokens; so vLLM gets the schema as a grammar harken compiles
  with xgrammar without free whitespace (`structured_outputs.grammar`, per request: no server
  flag needed). Other upstreams get OpenAI's `response_format`. Either way the answer is
  validated here.
- Limits. vLLM reports `max_model_len`; with the model's audio tokens per second harken
  shortens its windows to fit, and refuses up front a request that cannot fit, naming the
  vLLM flag to raise instead of passing on the upstream's 400.
"""

from __future__ import annotations

import base64
import io
import itertools
import json
import math
import re
import threading
import time
import wave
from dataclasses import dataclass
from typing import Any

import numpy as np

from harken.engines.base import Capability
from harken.engines.chat import AudioPart, ChatMessage, ChatOptions, EngineReply, OnText
from harken.errors import (
    InvalidOptionError, ModelError, ModelLoadError, PayloadTooLargeError, UpstreamError, UpstreamRejectedError, require,
)

__all__ = ["RemoteEngine", "Upstream"]

# Prompt positions kept for the chat template and the question when a window is fitted to the
# upstream's context (Qwen2-Audio's template alone is about 30).
_TEXT_ALLOWANCE = 256
_SHORTEST_WINDOW_S = 5.0


@dataclass(frozen=True)
class Upstream:
    """What an upstream's /v1/models says about the model harken asks for."""

    vllm: bool  # owned_by "vllm": structured output as a per-request grammar
    max_model_len: int | None  # prompt + answer positions; None: not reported


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
        # vLLM batches whatever is in flight, so the scheduler keeps several calls open per replica.
        self.parallel_calls = int(options.get("parallel_calls", 8 * len(self.urls)))
        # Audio prompt positions per second: 25 for Qwen2-Audio and Qwen2.5-Omni (750 per 30 s).
        self.audio_tokens_per_s = float(options.get("audio_tokens_per_s", 25.0))
        self.structured = str(options.get("structured_output", "auto"))
        if self.structured not in ("auto", "grammar", "response_format"):
            raise ModelLoadError(f"remote option structured_output must be auto, grammar or response_format, not {self.structured!r}")
        key = options.get("api_key")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.http = httpx.Client(timeout=float(options.get("timeout_s", 120.0)), headers=headers)
        self._order = itertools.cycle(range(len(self.urls)))
        self._down_until = [0.0] * len(self.urls)
        self._lock = threading.Lock()
        self._upstream: Upstream | None = None

    def warmup(self) -> None:
        """A health check: at least one upstream must answer /models."""
        self.upstream()

    def upstream(self) -> Upstream:
        """The first reachable upstream's facts about the model, learnt once (replicas serve the same)."""
        if self._upstream is not None:
            return self._upstream
        for i, url in enumerate(self.urls):
            try:
                response = self.http.get(url + "/models", timeout=5.0)
            except Exception:  # any transport failure: this upstream is down
                response = None
            if response is not None and response.status_code == 200:
                self._upstream = _upstream_facts(response, self.model)
                return self._upstream
            with self._lock:
                self._down_until[i] = time.monotonic() + self.down_s
        raise UpstreamError(f"no upstream of {self.model!r} is reachable ({', '.join(self.urls)})")

    def _max_model_len(self) -> int | None:
        try:
            return self.upstream().max_model_len
        except UpstreamError:  # none reachable now: a cached answer may still serve, the call itself says so
            return None

    def window_for(self, options: ChatOptions) -> float:
        """The longest audio window whose tokens, with the answer's, fit the upstream's context."""
        limit = self._max_model_len()
        if limit is None:
            return self.window_s
        room = limit - options.max_new_tokens - _TEXT_ALLOWANCE
        window = min(self.window_s, room / self.audio_tokens_per_s)
        if window < _SHORTEST_WINDOW_S:
            raise InvalidOptionError(
                f"{self.model!r} upstream holds {limit} tokens (its --max-model-len): too few for "
                f"{options.max_new_tokens} answer tokens and {_SHORTEST_WINDOW_S:.0f} s of audio; lower max_tokens or "
                f"start vLLM with a larger --max-model-len (at least {self._positions(self.window_s, options)})",
                param="max_tokens",
            )
        return window

    def _positions(self, audio_s: float, options: ChatOptions) -> int:
        return math.ceil(audio_s * self.audio_tokens_per_s) + options.max_new_tokens + _TEXT_ALLOWANCE

    def _preflight(self, messages: list[ChatMessage], options: ChatOptions) -> None:
        limit = self._max_model_len()
        if limit is None:
            return
        audio_s = sum(len(p.samples) / 16_000 for m in messages for p in m.audio)
        need = math.ceil(audio_s * self.audio_tokens_per_s) + options.max_new_tokens
        if need > limit:
            raise PayloadTooLargeError(
                f"{audio_s:.1f} s of audio ({math.ceil(audio_s * self.audio_tokens_per_s)} tokens) and "
                f"max_tokens {options.max_new_tokens} need {need} positions, over the {limit} of {self.model!r} upstream; "
                "send less audio, fewer turns or a lower max_tokens, or start vLLM with a larger --max-model-len",
                param="messages",
            )

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
            body.update(self._structured(options.json_schema))
        if on_text is not None:
            body.update(stream=True, stream_options={"include_usage": True})
        self._preflight(messages, options)
        reply = self._send(body, on_text)
        # An answer cut at max_tokens is handed on as it is, marked "length" (as OpenAI does).
        if options.json_schema is not None and reply.finish_reason == "stop":
            _validate(reply.text, json.loads(options.json_schema))
        return reply

    def _structured(self, schema_text: str) -> dict[str, Any]:
        grammar = self.structured == "grammar" or (self.structured == "auto" and self.upstream().vllm)
        if grammar:
            return {"structured_outputs": {"grammar": _json_grammar(schema_text)}}
        schema = json.loads(schema_text)
        if schema == {}:
            return {"response_format": {"type": "json_object"}}
        return {"response_format": {"type": "json_schema", "json_schema": {"name": "harken", "schema": schema, "strict": True}}}

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
    """The JSON body of a 2xx; an upstream 4xx becomes harken's own error, with its message."""
    try:
        data = response.json()
    except ValueError:
        data = {}
    if response.status_code >= 400:
        error = data.get("error", {}) if isinstance(data, dict) else {}
        error = error if isinstance(error, dict) else {"message": str(error)}
        message = str(error.get("message") or f"HTTP {response.status_code}")
        code = error.get("code")  # vLLM's is the HTTP status, a number: not an OpenAI code
        param = error.get("param") if isinstance(error.get("param"), str) else None
        raise UpstreamRejectedError(
            response.status_code, f"upstream: {message}{_flag_hint(message)}", param=param,
            code=code if isinstance(code, str) and code else None,
        )
    return data


# Upstream refusals whose cure is a vLLM flag: the flag is named in the error.
_HINTS = (
    (re.compile(r"maximum (context|model) length|max_model_len|too long", re.I),
     "start vLLM with a larger --max-model-len, or send less audio or a lower max_tokens"),
    (re.compile(r"at most \d+ audio", re.I), "start vLLM with a larger --limit-mm-per-prompt '{\"audio\": N}'"),
)


def _flag_hint(message: str) -> str:
    for pattern, hint in _HINTS:
        if pattern.search(message):
            return f" ({hint})"
    return ""


def _upstream_facts(response, model: str) -> Upstream:
    try:
        listed = response.json().get("data", [])
    except (ValueError, AttributeError):
        listed = []
    entry = next((m for m in listed if isinstance(m, dict) and m.get("id") == model), {})
    limit = entry.get("max_model_len")
    return Upstream(vllm=entry.get("owned_by") == "vllm", max_model_len=limit if isinstance(limit, int) and limit > 0 else None)


def _json_grammar(schema_text: str) -> str:
    """The schema as EBNF without free whitespace (xgrammar's own conversion), for vLLM."""
    xgr = require("xgrammar", "alm", "structured output from a vLLM upstream")

    schema = schema_text if schema_text != "{}" else '{"type": "object"}'
    try:
        return str(xgr.Grammar.from_json_schema(schema, any_whitespace=False))
    except (RuntimeError, ValueError) as exc:
        raise InvalidOptionError(f"the JSON schema cannot be compiled: {str(exc).splitlines()[0][:200]}", param="response_format") from None


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

