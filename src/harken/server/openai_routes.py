"""The OpenAI audio and model routes, shaped so the official `openai` client works unmodified."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, Path, Request, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from pydantic import BaseModel, Field

from harken.errors import HarkenError, InvalidOptionError, RequestTimeoutError
from harken.audio import read_audio
from harken.diarization import MAX_REFERENCES, DiarizeOptions
from harken.formats import WRITERS, diarized_json, needs_speakers, openai_json, verbose_json
from harken.registry import ModelInfo
from harken.server.errors import envelope, error_responses
from harken.server.state import ClientGone, state_of

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["OpenAI"])

ResponseFormat = Literal["json", "text", "srt", "verbose_json", "vtt", "diarized_json"]

_TEXT = {"schema": {"type": "string"}}
# Open API 3.1 has an event stream's `schema` describe one event; each `data` is a JSON object.
_EVENTS = {"schema": {"type": "object", "properties": {"data": {"type": "string"}}, "required": ["data"]}}
# What a transcription answers with, by response_format (and text/event-stream for stream=true).
_TRANSCRIPT_200 = {"description": "the transcript in the asked response_format", "content": {
    "application/json": {"schema": {"type": "object"}}, "text/plain": _TEXT, "application/x-subrip": _TEXT, "text/vtt": _TEXT,
}}
# Uploads: a bad option or empty audio (400), an unknown model (404), audio that does not decode
# (415), a form that does not match (422); a model not installed, a full queue or the time limit (503).
_SPEECH_TO_TEXT_ERRORS = error_responses(400, 404, 415, 422, 503)

# Realistic values for the documentation and for schema-driven tests.
_Model = Form(description="a catalogue model or alias; whisper-1 means the default model", examples=["whisper-1"])
_Prompt = Form(description="text to condition the decoder on (names, spelling)", examples=["JFK, inaugural address"])
_Temperature = Form(description="sampling temperature, 0 to 1", examples=[0.0], json_schema_extra={"minimum": 0, "maximum": 1})


@router.post(
    "/audio/transcriptions", summary="Transcribe audio (OpenAI)",
    responses={200: {**_TRANSCRIPT_200, "content": {**_TRANSCRIPT_200["content"], "text/event-stream": _EVENTS}},
               **_SPEECH_TO_TEXT_ERRORS},
)
async def transcriptions(
    request: Request,
    file: Annotated[UploadFile, File(description="audio in any container FFmpeg reads")],
    model: Annotated[str | None, _Model] = None,
    language: Annotated[str | None, Form(description="the spoken language's code; unset: detected", examples=["en"])] = None,
    prompt: Annotated[str | None, _Prompt] = None,
    response_format: Annotated[ResponseFormat, Form(examples=["json"])] = "json",
    temperature: Annotated[float, _Temperature] = 0.0,
    timestamp_granularities: Annotated[
        list[str] | None,
        Form(alias="timestamp_granularities[]", description="with verbose_json: word and/or segment", examples=[["word", "segment"]]),
    ] = None,
    stream: Annotated[bool, Form(description="answer as server-sent transcript.text events, each piece as it is decoded")] = False,
    known_speaker_names: Annotated[list[str] | None, Form(
        alias="known_speaker_names[]", description="with diarized_json: names for up to 4 voices, each matching a reference",
        examples=[["agent"]])] = None,
    known_speaker_references: Annotated[list[str] | None, Form(
        alias="known_speaker_references[]", description="a data: URL of 2-10 s of audio per known speaker name")] = None,
    chunking_strategy: Annotated[str | None, Form(
        description="accepted for OpenAI compatibility; harken always cuts long audio at pauses")] = None,
    diarize: Annotated[bool, Form(description="harken: give each segment its speaker in any response_format")] = False,
    num_speakers: Annotated[int | None, Form(description="harken: exactly this many speakers", ge=1, le=32)] = None,
    min_speakers: Annotated[int | None, Form(description="harken: at least this many speakers", ge=1, le=32)] = None,
    max_speakers: Annotated[int | None, Form(description="harken: at most this many speakers", ge=1, le=32)] = None,
) -> Response:
    granularities = set(timestamp_granularities or [])
    if bad := granularities - {"word", "segment"}:
        raise InvalidOptionError(f"unknown timestamp granularity {sorted(bad)[0]!r}", param="timestamp_granularities")
    known = _known_speakers(known_speaker_names or [], known_speaker_references or [])
    speaker_counts = (num_speakers, min_speakers, max_speakers)
    speakers = None
    if diarize or known or needs_speakers(response_format) or any(speaker_counts):
        speakers = DiarizeOptions(*speaker_counts)
        if stream:
            raise InvalidOptionError("a diarized transcript cannot be streamed; leave out stream", param="stream")
    return await _speech_to_text(
        request, "transcribe", file, model, response_format, stream, granularities,
        language=language, initial_prompt=prompt, temperature=temperature, word_timestamps="word" in granularities,
        **({"diarize": speakers, "known_speakers": known} if speakers else {}),
    )


def _known_speakers(names: list[str], references: list[str]) -> dict:
    """Name -> the reference audio, read from its data: URL (never a path or a URL to fetch)."""
    if len(names) != len(references):
        raise InvalidOptionError(
            f"{len(names)} known_speaker_names but {len(references)} known_speaker_references; give one reference per name",
            param="known_speaker_references",
        )
    if len(names) > MAX_REFERENCES:
        raise InvalidOptionError(
            f"at most {MAX_REFERENCES} known speakers can be named, not {len(names)}", param="known_speaker_names"
        )
    known = {}
    for name, ref in zip(names, references):
        if not ref.startswith("data:"):
            raise InvalidOptionError("each known_speaker_references entry must be a data: URL of audio", param="known_speaker_references")
        known[name] = read_audio(ref, name=f"reference for {name}")
    if len(known) < len(names):
        raise InvalidOptionError("known speaker names must differ", param="known_speaker_names")
    return known


@router.post(
    "/audio/translations", summary="Translate audio to English text (OpenAI)",
    responses={200: {**_TRANSCRIPT_200, "content": {**_TRANSCRIPT_200["content"], "text/event-stream": _EVENTS}},
               **_SPEECH_TO_TEXT_ERRORS},
)
async def translations(
    request: Request,
    file: Annotated[UploadFile, File(description="audio in any container FFmpeg reads")],
    model: Annotated[str | None, Form(description="a multilingual catalogue model or alias", examples=["whisper-base"])] = None,
    prompt: Annotated[str | None, _Prompt] = None,
    response_format: Annotated[ResponseFormat, Form(examples=["json"])] = "json",
    temperature: Annotated[float, _Temperature] = 0.0,
    stream: Annotated[bool, Form(description="answer as server-sent transcript.text events, each piece as it is decoded")] = False,
) -> Response:
    return await _speech_to_text(
        request, "translate", file, model, response_format, stream, set(), initial_prompt=prompt, temperature=temperature
    )


class ModelObject(BaseModel):
    """One model in OpenAI's shape, with harken's aliases, engine and whether it is in memory."""

    id: str = Field(examples=["whisper-tiny.en"])
    object: Literal["model"]
    created: int
    owned_by: str
    aliases: list[str] = Field(examples=[["default", "tiny.en"]])
    engine: str = Field(examples=["whisper"])
    loaded: bool


class ModelList(BaseModel):
    object: Literal["list"]
    data: list[ModelObject]


# The answers are documented, not enforced (response_model=None): _model_object builds them.
@router.get("/models", summary="List models (OpenAI)", response_model=None,
            responses={200: {"model": ModelList, "description": "the installed models"}})
async def list_models(request: Request) -> dict:
    infos = state_of(request).service.registry.describe()
    return {"object": "list", "data": [_model_object(i) for i in infos if i.installed]}


# 400: a directory under server.model_roots that holds no model harken can drive.
@router.get(
    "/models/{model_id:path}", summary="Describe one model (OpenAI)", response_model=None,
    responses={200: {"model": ModelObject, "description": "the model"}, **error_responses(400, 404, 422)},
)
async def get_model(request: Request, model_id: Annotated[str, Path(examples=["whisper-1"])]) -> dict:
    registry = state_of(request).service.registry
    entry = registry.resolve(model_id)  # UnknownModelError -> 404 envelope
    info = next((i for i in registry.describe() if i.name == entry.name), None)
    if info is None:  # a model directory under server.model_roots, named as the client named it
        info = ModelInfo(model_id, (), entry.engine, True, entry.name in registry.loaded_names(), None, "")
    return _model_object(info)


def _model_object(info: ModelInfo) -> dict:
    return {
        "id": info.name,
        "object": "model",
        "created": 0,
        "owned_by": "harken",
        "aliases": list(info.aliases),
        "engine": info.engine,
        "loaded": info.loaded,
    }


async def _speech_to_text(
    request: Request,
    task: Literal["transcribe", "translate"],
    upload: UploadFile,
    model: str | None,
    response_format: ResponseFormat,
    stream: bool,
    granularities: set[str],
    **options,
) -> Response:
    state = state_of(request)
    source = await state.read_upload(upload)
    if stream:
        return await _stream(request, task, source, model, options)
    work = state.service.translate_async if task == "translate" else state.service.transcribe_async
    try:
        transcript = await state.run(request, work(source, model=model, **options))
    except ClientGone:
        return Response(status_code=499)
    headers = state.record(request, transcript)
    if response_format == "json":
        return JSONResponse(openai_json(transcript), headers=headers)
    if response_format == "diarized_json":
        return JSONResponse(diarized_json(transcript), headers=headers)
    if response_format == "verbose_json":
        body = verbose_json(transcript)
        if granularities and "segment" not in granularities:
            body.pop("segments")
        body["usage"] = {"type": "duration", "seconds": round(transcript.duration, 3)}
        body["timings"] = transcript.timings.to_dict()
        return JSONResponse(body, headers=headers)
    writer = WRITERS["txt" if response_format == "text" else response_format]
    return PlainTextResponse(writer.render(transcript), media_type=writer.media_type, headers=headers)


async def _stream(request: Request, task: str, source, model: str | None, options: dict) -> Response:
    """OpenAI's transcription stream: `transcript.text.delta` events as pieces are decoded, in
    order and never taken back, then `transcript.text.done` with the whole text."""
    state = state_of(request)
    loop = asyncio.get_running_loop()
    deltas: asyncio.Queue[str] = asyncio.Queue()
    # Request errors (bad option, unknown model, audio that does not decode) surface here, as a
    # normal error response, before the stream starts.
    answer = await state.service.begin_transcript_async(
        source, task=task, model=model, on_text=lambda d: loop.call_soon_threadsafe(deltas.put_nowait, d), **options
    )
    deadline = loop.time() + state.settings.server.request_timeout_s

    async def events() -> AsyncIterator[str]:
        told = ""
        try:
            while True:
                getter = asyncio.ensure_future(deltas.get())
                done, _ = await asyncio.wait({getter, answer}, timeout=max(0.0, deadline - loop.time()),
                                             return_when=asyncio.FIRST_COMPLETED)
                if getter in done:
                    told += getter.result()
                    yield _sse({"type": "transcript.text.delta", "delta": getter.result()})
                    continue
                getter.cancel()
                break
            while not deltas.empty():  # told before the result was set: already queued
                delta = deltas.get_nowait()
                told += delta
                yield _sse({"type": "transcript.text.delta", "delta": delta})
            if not answer.done():
                raise RequestTimeoutError(
                    f"request took longer than {state.settings.server.request_timeout_s:g} s and was stopped"
                )
            transcript = answer.result()
            state.record(request, transcript)
            if transcript.text.startswith(told) and transcript.text != told:
                yield _sse({"type": "transcript.text.delta", "delta": transcript.text[len(told):]})
            yield _sse({"type": "transcript.text.done", "text": transcript.text,
                        "usage": {"type": "duration", "seconds": round(transcript.duration, 3)}})
        except HarkenError as exc:  # after the stream started, an error is the stream's last event
            yield _sse(envelope(exc.message, exc.type, exc.code, exc.param))
        finally:
            if not answer.done():  # the client went away mid-stream
                answer.cancel()

    return StreamingResponse(events(), media_type="text/event-stream")


def _sse(event: dict) -> str:
    return f"data: {json.dumps(event, ensure_ascii=False)}\n\n"
