"""The OpenAI audio and model routes, shaped so the official `openai` client works unmodified."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, Path, Request, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from pydantic import BaseModel, Field

from harken.errors import InvalidOptionError
from harken.formats import WRITERS, openai_json, verbose_json
from harken.registry import ModelInfo
from harken.results import Transcript
from harken.server.errors import error_responses
from harken.server.state import ClientGone, state_of

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["OpenAI"])

ResponseFormat = Literal["json", "text", "srt", "verbose_json", "vtt"]

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
    stream: Annotated[bool, Form(description="answer as server-sent transcript.text events")] = False,
) -> Response:
    granularities = set(timestamp_granularities or [])
    if bad := granularities - {"word", "segment"}:
        raise InvalidOptionError(f"unknown timestamp granularity {sorted(bad)[0]!r}", param="timestamp_granularities")
    return await _speech_to_text(
        request, "transcribe", file, model, response_format, stream, granularities,
        language=language, initial_prompt=prompt, temperature=temperature, word_timestamps="word" in granularities,
    )


@router.post(
    "/audio/translations", summary="Translate audio to English text (OpenAI)",
    responses={200: _TRANSCRIPT_200, **_SPEECH_TO_TEXT_ERRORS},
)
async def translations(
    request: Request,
    file: Annotated[UploadFile, File(description="audio in any container FFmpeg reads")],
    model: Annotated[str | None, Form(description="a multilingual catalogue model or alias", examples=["whisper-base"])] = None,
    prompt: Annotated[str | None, _Prompt] = None,
    response_format: Annotated[ResponseFormat, Form(examples=["json"])] = "json",
    temperature: Annotated[float, _Temperature] = 0.0,
) -> Response:
    return await _speech_to_text(
        request, "translate", file, model, response_format, False, set(), initial_prompt=prompt, temperature=temperature
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
    work = state.service.translate_async if task == "translate" else state.service.transcribe_async
    try:
        transcript = await state.run(request, work(source, model=model, **options))
    except ClientGone:
        return Response(status_code=499)
    headers = state.record(request, transcript)
    if stream:
        return StreamingResponse(_events(transcript), media_type="text/event-stream", headers=headers)
    if response_format == "json":
        return JSONResponse(openai_json(transcript), headers=headers)
    if response_format == "verbose_json":
        body = verbose_json(transcript)
        if granularities and "segment" not in granularities:
            body.pop("segments")
        body["usage"] = {"type": "duration", "seconds": round(transcript.duration, 3)}
        body["timings"] = transcript.timings.to_dict()
        return JSONResponse(body, headers=headers)
    writer = WRITERS["txt" if response_format == "text" else response_format]
    return PlainTextResponse(writer.render(transcript), media_type=writer.media_type, headers=headers)


async def _events(t: Transcript) -> AsyncIterator[str]:
    """OpenAI's transcription stream: a `transcript.text.delta` per segment, then `done`."""
    for i, segment in enumerate(s for s in t.segments if s.text):
        delta = segment.text if i == 0 else " " + segment.text
        yield _sse({"type": "transcript.text.delta", "delta": delta})
    yield _sse({"type": "transcript.text.done", "text": t.text})


def _sse(event: dict) -> str:
    return f"data: {json.dumps(event, ensure_ascii=False)}\n\n"
