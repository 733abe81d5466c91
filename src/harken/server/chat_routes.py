"""`POST /v1/chat/completions` in the OpenAI shape, with audio parts, for audio-language models."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal, Union

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from harken.audio import Audio, named_bytes
from harken.engines.chat import AudioPart, ChatMessage, TextPart
from harken.errors import AudioDecodeError, HarkenError, InvalidOptionError
from harken.results import ChatResult, SpeechAudio
from harken.service import SpeakAnswer
from harken.server.errors import envelope, error_responses
from harken.server.state import ClientGone, ServerState, state_of
from harken.tasks import check_schema

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["OpenAI"])


class _Text(BaseModel):
    type: Literal["text"]
    text: str = Field(examples=["What is said in this clip?"])


class _InputAudioData(BaseModel):
    data: str = Field(description="base64 audio bytes")
    format: str | None = Field(None, description="the audio's container, a hint only", examples=["wav"])


class _InputAudio(BaseModel):
    type: Literal["input_audio"]
    input_audio: _InputAudioData


class _AudioUrlData(BaseModel):
    url: str = Field(
        description="a file:// URL or absolute path under the allowed media roots, an allowed http(s) URL, or a data: URL",
        examples=["file:///srv/audio/jfk.flac"],
    )


class _AudioUrl(BaseModel):
    type: Literal["audio_url"]
    audio_url: _AudioUrlData


Part = Annotated[Union[_Text, _InputAudio, _AudioUrl], Field(discriminator="type")]


class _Message(BaseModel):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[Part] | None = Field(None, examples=["Summarise the clip in one sentence."])


class _JsonSchema(BaseModel):
    name: str | None = None
    schema_: dict[str, Any] = Field(alias="schema")
    strict: bool | None = None


class _ResponseFormat(BaseModel):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: _JsonSchema | None = None


class _StreamOptions(BaseModel):
    include_usage: bool = False


class _AudioOut(BaseModel):
    voice: str | None = Field(
        None, description="a speaker of the model's own voice (Qwen2.5-Omni: Chelsie, Ethan) or a Piper voice; "
                          "stock OpenAI names mean the default one",
    )
    format: Literal["mp3", "opus", "aac", "flac", "wav", "pcm", "pcm16"] = Field(
        "wav", description="pcm and pcm16: raw 16-bit little-endian at 24 kHz",
    )


class ChatRequest(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"model": "omni", "messages": [{"role": "user", "content": "Say hello in five words."}], "max_tokens": 16},
        {
            "model": "omni",
            "messages": [{"role": "user", "content": [
                {"type": "text", "text": "What is said in this clip?"},
                {"type": "audio_url", "audio_url": {"url": "file:///srv/audio/jfk.flac"}},
            ]}],
            "max_tokens": 64,
        },
    ]})

    model: str | None = Field(None, description="a configured audio-language model (or a remote one)", examples=["omni"])
    messages: list[_Message] = Field(min_length=1)
    # The service checks these ranges (400 outside them); the schema says them too.
    max_tokens: int | None = Field(None, ge=1, json_schema_extra={"maximum": 32768}, examples=[64])
    max_completion_tokens: int | None = Field(None, ge=1, json_schema_extra={"maximum": 32768})
    temperature: float | None = Field(None, json_schema_extra={"minimum": 0, "maximum": 2}, examples=[0.0])
    top_p: float | None = Field(None, json_schema_extra={"minimum": 0, "maximum": 1})
    top_k: int | None = Field(None, json_schema_extra={"minimum": 0, "maximum": 10_000})
    seed: int | None = None
    stream: bool = False
    stream_options: _StreamOptions | None = None
    response_format: _ResponseFormat | None = None
    audio_path: str | list[str] | None = Field(
        None, description="harken extension: local audio for the last user turn", examples=["/srv/audio/jfk.flac"]
    )
    modalities: list[Literal["text", "audio"]] | None = None
    audio: _AudioOut | None = None


# 400: an option the model cannot honour (or a model that cannot chat), empty audio; 403 and 404:
# an audio path or URL this server may not read, or that is not there, or an unknown model; 413:
# audio larger than the cap, two parts longer than the window, more than a remote upstream's
# context holds (audio longer than the window is answered window by window); 415: audio that does not decode;
# 503: the model missing or loading, a full queue, the time limit, or every remote upstream down.
@router.post(
    "/chat/completions", summary="Chat with audio (OpenAI)",
    responses={
        200: {"description": "the answer, or its server-sent chunks with stream=true", "content": {
            "application/json": {"schema": {"type": "object"}},
            # Open API 3.1: an event stream's schema is one event's; `data` is a chunk or [DONE].
            "text/event-stream": {"schema": {"type": "object", "properties": {"data": {"type": "string"}}, "required": ["data"]}},
        }},
        **error_responses(400, 403, 404, 415, 422, 503),
    },
)
async def chat_completions(request: Request, body: ChatRequest) -> Response:
    state = state_of(request)
    try:
        # Under the request's deadline: a slow audio URL or a client that leaves stops here.
        messages = await state.run(request, _messages(state, body))
    except ClientGone:
        return Response(status_code=499)
    options: dict[str, Any] = dict(
        max_new_tokens=body.max_completion_tokens or body.max_tokens,
        temperature=body.temperature, top_p=body.top_p, top_k=body.top_k, seed=body.seed,
        json_schema=_schema(body.response_format),
    )
    completion_id = "chatcmpl-" + uuid.uuid4().hex[:24]
    if body.modalities is not None and "audio" in body.modalities:
        # Spoken by the model's own talker where it has one, else by a Piper voice (the service decides).
        audio = body.audio or _AudioOut()
        options["speak"] = SpeakAnswer(audio.voice, audio.format)
    if body.stream:
        return await _stream(request, state, messages, body, options, completion_id)
    try:
        result = await state.run(request, state.service.chat_async(messages, model=body.model, **options))
    except ClientGone:
        return Response(status_code=499)
    headers = state.record_chat(request, result)
    message: dict[str, Any] = {"role": "assistant", "content": result.text}
    if "speak" in options:
        message["audio"] = _audio(result.speech, result.text) if result.speech is not None else None
    return JSONResponse(
        {
            "id": completion_id,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": result.model,
            "choices": [{"index": 0, "message": message, "finish_reason": result.finish_reason, "logprobs": None}],
            "usage": _usage(result),
            "timings": result.timings.to_dict(),
            **_windows(result),
        },
        headers=headers,
    )


async def _stream(request: Request, state: ServerState, messages, body: ChatRequest, options, completion_id: str) -> Response:
    loop = asyncio.get_running_loop()
    deltas: asyncio.Queue[str] = asyncio.Queue()
    # Errors in the request surface here, as a normal error response, before the stream starts.
    turn = await state.service.begin_chat_async(
        messages, model=body.model, on_text=lambda d: loop.call_soon_threadsafe(deltas.put_nowait, d), **options
    )
    created = int(time.time())

    def chunk(delta: dict, finish: str | None = None, usage: dict | None = None, extra: dict | None = None) -> str:
        data = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": turn.model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}] if usage is None else [],
                **(extra or {})}
        if usage is not None:
            data["usage"] = usage
        return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"

    async def events() -> AsyncIterator[str]:
        answer = asyncio.ensure_future(turn.result())
        try:
            yield chunk({"role": "assistant", "content": ""})
            while True:
                getter = asyncio.ensure_future(deltas.get())
                done, _ = await asyncio.wait({getter, answer}, return_when=asyncio.FIRST_COMPLETED)
                if getter in done:
                    yield chunk({"content": getter.result()})
                    continue
                getter.cancel()
                break
            while not deltas.empty():
                yield chunk({"content": deltas.get_nowait()})
            try:
                result = answer.result()
            except HarkenError as exc:
                yield f"data: {json.dumps(envelope(exc.message, exc.type, exc.code, exc.param))}\n\n"
                return
            state.record_chat(request, result)
            if result.speech is not None:  # as OpenAI streams it: id and transcript, the data in pieces, the expiry
                audio_id = "audio_" + uuid.uuid4().hex[:24]
                yield chunk({"audio": {"id": audio_id, "transcript": result.text}})
                data = result.speech.data
                for at in range(0, len(data), _AUDIO_PIECE):
                    yield chunk({"audio": {"id": audio_id, "data": base64.b64encode(data[at:at + _AUDIO_PIECE]).decode()}})
                yield chunk({"audio": {"id": audio_id, "expires_at": int(time.time()) + 3600}})
            yield chunk({}, finish=result.finish_reason, extra=_windows(result))
            if body.stream_options and body.stream_options.include_usage:
                yield chunk({}, usage=_usage(result))
            yield "data: [DONE]\n\n"
        finally:
            if not answer.done():  # the client went away mid-stream
                answer.cancel()

    return StreamingResponse(events(), media_type="text/event-stream")


async def _messages(state: ServerState, body: ChatRequest) -> list[ChatMessage]:
    out: list[ChatMessage] = []
    for i, m in enumerate(body.messages):
        role = "system" if m.role == "developer" else m.role
        if m.content is None or isinstance(m.content, str):
            parts: tuple = (TextPart(m.content or ""),)
        else:
            parts = tuple([await _part(state, p, f"messages.{i}.content") for p in m.content])
        out.append(ChatMessage(role, parts))
    if body.audio_path:
        paths = [body.audio_path] if isinstance(body.audio_path, str) else body.audio_path
        users = [i for i, m in enumerate(out) if m.role == "user"]
        if not users:
            raise InvalidOptionError("audio_path needs a user message to attach to", param="audio_path")
        extra = tuple([await _audio_part(state, await state.media.source(p, param="audio_path")) for p in paths])
        last = out[users[-1]]
        out[users[-1]] = ChatMessage("user", extra + last.parts)
    return out


async def _part(state: ServerState, part, where: str) -> TextPart | AudioPart:
    if isinstance(part, _Text):
        return TextPart(part.text)
    if isinstance(part, _InputAudio):
        try:
            data = base64.b64decode(part.input_audio.data, validate=True)
        except (binascii.Error, ValueError):
            raise AudioDecodeError("input_audio.data is not valid base64", param=where) from None
        return await _audio_part(state, named_bytes(data, f"input_audio.{part.input_audio.format or 'audio'}"))
    return await _audio_part(state, await state.media.source(part.audio_url.url, param=where))


async def _audio_part(state: ServerState, source) -> AudioPart:
    audio: Audio = await asyncio.to_thread(state.service.load_audio, source)
    return AudioPart(audio.samples, audio.sha256)


def _schema(fmt: _ResponseFormat | None) -> dict | None:
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object":
        return {}
    if fmt.json_schema is None:
        raise InvalidOptionError("response_format json_schema needs a json_schema.schema", param="response_format")
    check_schema(fmt.json_schema.schema_)
    return fmt.json_schema.schema_


# 48,000 bytes: a second of pcm16 at 24 kHz per streamed piece (any cut concatenates back).
_AUDIO_PIECE = 48_000


def _audio(speech: SpeechAudio, text: str) -> dict:
    """The spoken answer in OpenAI's `message.audio` shape."""
    return {
        "id": "audio_" + uuid.uuid4().hex[:24],
        "data": base64.b64encode(speech.data).decode(),
        "expires_at": int(time.time()) + 3600,
        "transcript": text,
    }


def _windows(result: ChatResult) -> dict:
    """harken's extension: the windows a long clip was answered in, each with its own answer."""
    if not result.windows:
        return {}
    return {"windows": [{"start": w.start, "end": w.end, "text": w.text} for w in result.windows]}


def _usage(result: ChatResult) -> dict:
    return {
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
        "total_tokens": result.prompt_tokens + result.completion_tokens,
    }
