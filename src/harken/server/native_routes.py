"""Plain routes in the shape users of local runners know: health, readiness, /transcribe."""

from __future__ import annotations

import asyncio
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

from harken.engines.whisper import resolve_device
from harken.errors import AudioError, HarkenError
from harken.formats import file_error, file_record
from harken.server.errors import error_response
from harken.server.state import ClientGone, ServerState, state_of

__all__ = ["router"]

router = APIRouter(tags=["native"])


class TranscribeRequest(BaseModel):
    paths: list[str] = Field(min_length=1, max_length=1024, description="absolute paths under the allowed media roots, file:// URLs, allowed http(s) URLs or data: URLs")
    model: str | None = None
    prompt: str | None = None
    max_new_tokens: int | None = Field(128, ge=1, le=440)
    language: str | None = None
    word_timestamps: bool = False
    use_cache: bool = True


@router.get("/healthz", summary="Liveness, device and loaded models")
async def healthz(request: Request) -> dict:
    state = state_of(request)
    service = state.service
    return {
        "status": "ok",
        "device": resolve_device(state.settings.device),
        "model": service.registry.resolve(None).name,
        "models_loaded": service.registry.loaded_names(),
    }


@router.get("/readyz", summary="Ready once the default model is loaded")
async def readyz(request: Request) -> Response:
    state = state_of(request)
    if not state.ready:
        return error_response(503, "the default model is still loading", code="not_ready", retry_after=1)
    return JSONResponse({"status": "ready"})


@router.get("/metrics", summary="Prometheus metrics")
async def metrics(request: Request) -> Response:
    return Response(generate_latest(state_of(request).metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.post("/transcribe", summary="Transcribe files the server can read, in order")
async def transcribe(request: Request, body: TranscribeRequest) -> Response:
    state = state_of(request)
    # Every path is checked before any work, so one forbidden path refuses the whole request.
    sources = await asyncio.gather(*(asyncio.to_thread(_source, state, p) for p in body.paths))
    options = dict(
        model=body.model, initial_prompt=body.prompt, max_new_tokens=body.max_new_tokens,
        language=body.language, word_timestamps=body.word_timestamps, use_cache=body.use_cache,
    )
    try:
        outcomes = await state.run(
            request,
            # Together, so the scheduler can batch them into shared engine calls.
            asyncio.gather(*(_one(state, request, p, s, options) for p, s in zip(body.paths, sources)), return_exceptions=True),
        )
    except ClientGone:
        return Response(status_code=499)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome  # a model or option problem is the same for every file: fail the request
    return JSONResponse({"results": outcomes})


class EvaluateRequest(BaseModel):
    audio_dir: str
    gt_dir: str
    model: str | None = None
    max_new_tokens: int | None = Field(None, ge=1, le=4096)
    match_mode: str = Field("exact", description="exact or wer")
    normalizer: str = "english"


@router.post("/evaluate", summary="Score a model on a folder of clips and a folder of labels")
async def evaluate_route(request: Request, body: EvaluateRequest) -> JSONResponse:
    from harken.evaluation import evaluate_folder

    state = state_of(request)
    audio_dir = state.media.local_dir(body.audio_dir, param="audio_dir")
    gt_dir = state.media.local_dir(body.gt_dir, param="gt_dir")
    report = await state.run(request, asyncio.to_thread(
        evaluate_folder, audio_dir, gt_dir, model=body.model, max_new_tokens=body.max_new_tokens,
        match_mode=body.match_mode, normalizer=body.normalizer, service=state.service,
    ))
    data = report.to_dict()
    # Paths come back as the client named them, never as resolved server paths.
    for detail in data["details"]:
        detail["path"] = body.audio_dir.rstrip("/") + "/" + Path(detail["path"]).relative_to(audio_dir).as_posix()
    data["dataset"] = body.audio_dir
    return JSONResponse(data)


def _source(state: ServerState, path: str):
    try:
        return state.media.source(path)
    except AudioError as exc:
        return exc  # a missing file is that file's error, not the request's


async def _one(state: ServerState, request: Request, path: str, source, options: dict) -> dict:
    if isinstance(source, HarkenError):
        return file_error(path, source)
    try:
        transcript = await state.service.transcribe_async(source, **options)
    except AudioError as exc:
        return file_error(path, exc)
    state.record(request, transcript)
    return file_record(path, transcript)
