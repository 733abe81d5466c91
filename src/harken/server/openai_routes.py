"""The OpenAI audio and model routes, shaped so the official `openai` client works unmodified."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from harken.errors import InvalidOptionError
from harken.formats import WRITERS, openai_json, verbose_json
from harken.registry import ModelInfo
from harken.results import Transcript
from harken.server.state import ClientGone, state_of

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["OpenAI"])

ResponseFormat = Literal["json", "text", "srt", "verbose_json", "vtt"]


@router.post("/audio/transcriptions", summary="Transcribe audio (OpenAI)")
async def transcriptions(
    request: Request,
    file: Annotated[UploadFile, File(description="audio in any container FFmpeg reads")],
    model: Annotated[str | None, Form()] = None,
    language: Annotated[str | None, Form()] = None,
    prompt: Annotated[str | None, Form()] = None,
    response_format: Annotated[ResponseFormat, Form()] = "json",
    temperature: Annotated[float, Form()] = 0.0,
    timestamp_granularities: Annotated[list[str] | None, Form(alias="timestamp_granularities[]")] = None,
    stream: Annotated[bool, Form()] = False,
) -> Response:
    granularities = set(timestamp_granularities or [])
    if bad := granularities - {"word", "segment"}:
        raise InvalidOptionError(f"unknown timestamp granularity {sorted(bad)[0]!r}", param="timestamp_granularities")
    return await _speech_to_text(
        request, "transcribe", file, model, response_format, stream, granularities,
        language=language, initial_prompt=prompt, temperature=temperature, word_timestamps="word" in granularities,
    )


@router.post("/audio/translations", summary="Translate audio to English text (OpenAI)")
async def translations(
    request: Request,
    file: Annotated[UploadFile, File()],
    model: Annotated[str | None, Form()] = None,
    prompt: Annotated[str | None, Form()] = None,
    response_format: Annotated[ResponseFormat, Form()] = "json",
    temperature: Annotated[float, Form()] = 0.0,
) -> Response:
    return await _speech_to_text(
        request, "translate", file, model, response_format, False, set(), initial_prompt=prompt, temperature=temperature
    )


@router.get("/models", summary="List models (OpenAI)")
async def list_models(request: Request) -> dict:
    infos = state_of(request).service.registry.describe()
    return {"object": "list", "data": [_model_object(i) for i in infos if i.installed]}


@router.get("/models/{model_id:path}", summary="Describe one model (OpenAI)")
async def get_model(request: Request, model_id: str) -> dict:
    registry = state_of(request).service.registry
    name = registry.resolve(model_id).name  # UnknownModelError -> 404 envelope
    info = next(i for i in registry.describe() if i.name == name)
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
