"""Plain routes in the shape users of local runners know: health, readiness, /transcribe."""

from __future__ import annotations

import asyncio
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field

from harken.engines.whisper import resolve_device
from harken.errors import AudioError, HarkenError, PayloadTooLargeError
from harken.formats import file_error, file_record
from harken.server.errors import error_response, error_responses
from harken.server.state import ClientGone, ServerState, state_of

__all__ = ["router"]

router = APIRouter(tags=["native"])


class TranscribeRequest(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"paths": ["/srv/audio/jfk.flac"], "model": "whisper-1", "max_new_tokens": 128},
    ]})

    paths: list[str] = Field(
        min_length=1, max_length=1024, examples=[["/srv/audio/jfk.flac", "file:///srv/audio/interview.mp3"]],
        description="absolute paths under the allowed media roots, file:// URLs, allowed http(s) URLs or data: URLs",
    )
    model: str | None = Field(None, examples=["whisper-1"])
    prompt: str | None = Field(None, examples=["JFK, inaugural address"])
    max_new_tokens: int | None = Field(128, ge=1, le=440)
    language: str | None = Field(None, description="the spoken language's code; unset: detected", examples=["en"])
    word_timestamps: bool = False
    use_cache: bool = True


@router.get("/healthz", summary="Liveness, device and loaded models")
async def healthz(request: Request) -> dict:
    state = state_of(request)
    registry = state.service.registry
    catalogue = set(registry.names())
    try:
        default = registry.resolve(None).name
    except HarkenError:  # a default_model that names nothing is for /readyz to report, not a dead server
        default = state.settings.default_model
    return {
        "status": "ok",
        "device": resolve_device(state.settings.device),
        "model": default,
        # Unauthenticated: catalogue names only, never a model directory's path.
        "models_loaded": [name for name in registry.loaded_names() if name in catalogue],
    }


@router.get("/readyz", summary="Ready once the default model is loaded", responses=error_responses(503))
async def readyz(request: Request) -> Response:
    state = state_of(request)
    if state.load_error is not None:
        return error_response(503, f"the default model did not load: {state.load_error}", code="model_load_failed")
    if not state.ready:
        return error_response(503, "the default model is still loading", code="not_ready", retry_after=1)
    return JSONResponse({"status": "ready"})


@router.get(
    "/metrics", summary="Prometheus metrics", response_class=Response,
    responses={200: {"description": "the Prometheus text format", "content": {"text/plain": {"schema": {"type": "string"}}}}},
)
async def metrics(request: Request) -> Response:
    return Response(generate_latest(state_of(request).metrics.registry), media_type=CONTENT_TYPE_LATEST)


# 400: a relative path or NUL byte, a bad option; 403: a path outside the roots or a host not
# allowed; 404: an unknown model; 503: the model missing or loading, a full queue, the time limit.
# A file that is missing, too large or not audio is that file's `error`, not the request's.
@router.post(
    "/transcribe", summary="Transcribe files the server can read, in order",
    responses=error_responses(400, 403, 404, 422, 503),
)
async def transcribe(request: Request, body: TranscribeRequest) -> Response:
    state = state_of(request)
    # Every reference is checked before any work, so one forbidden path refuses the whole request.
    for path in body.paths:
        state.media.check(path, param="paths")
    options = dict(
        model=body.model, initial_prompt=body.prompt, max_new_tokens=body.max_new_tokens,
        language=body.language, word_timestamps=body.word_timestamps, use_cache=body.use_cache,
    )
    # A batch's worth in flight at once: enough for the scheduler to join them into shared
    # engine calls, while only that many files are ever held in memory.
    slots = asyncio.Semaphore(state.settings.scheduler.max_batch)
    try:
        outcomes = await state.run(
            request,
            asyncio.gather(*(_one(state, request, slots, p, options) for p in body.paths), return_exceptions=True),
        )
    except ClientGone:
        return Response(status_code=499)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome  # a model or option problem is the same for every file: fail the request
    return JSONResponse({"results": outcomes})


class EvaluateRequest(BaseModel):
    audio_dir: str = Field(description="a folder under the allowed media roots", examples=["/srv/eval/audio"])
    gt_dir: str = Field(description="a folder of <clip stem>.txt labels under the roots", examples=["/srv/eval/labels"])
    model: str | None = Field(None, examples=["whisper-1"])
    max_new_tokens: int | None = Field(None, ge=1, le=4096)
    # evaluate_folder checks these (400 otherwise); the schema says the same.
    match_mode: str = Field("wer", description="wer (WER and CER, the default as in `harken eval`) or exact",
                            json_schema_extra={"enum": ["wer", "exact"]})
    normalizer: str = Field("english", json_schema_extra={"enum": ["english", "basic", "none"]})


# 400: a bad option, no usable clips or labels; 403: a folder outside the roots; 404: no such
# folder or model; 503: the model missing or loading, the time limit.
@router.post(
    "/evaluate", summary="Score a model on a folder of clips and a folder of labels",
    responses=error_responses(400, 403, 404, 422, 503),
)
async def evaluate_route(request: Request, body: EvaluateRequest) -> JSONResponse:
    from harken.evaluation import evaluate_folder

    state = state_of(request)
    audio_dir = state.media.local_dir(body.audio_dir, param="audio_dir")
    gt_dir = state.media.local_dir(body.gt_dir, param="gt_dir")
    report = await state.run(request, asyncio.to_thread(
        evaluate_folder, audio_dir, gt_dir, model=body.model, max_new_tokens=body.max_new_tokens,
        match_mode=body.match_mode, normalizer=body.normalizer, service=state.service, guard=state.media.guard,
    ))
    data = report.to_dict()
    # Paths come back as the client named them, never as resolved server paths.
    for detail in data["details"]:
        detail["path"] = body.audio_dir.rstrip("/") + "/" + Path(detail["path"]).relative_to(audio_dir).as_posix()
    data["dataset"] = body.audio_dir
    return JSONResponse(data)


async def _one(state: ServerState, request: Request, slots: asyncio.Semaphore, path: str, options: dict) -> dict:
    async with slots:
        try:
            source = await state.media.source(path, param="paths")
            transcript = await state.service.transcribe_async(source, **options)
        except (AudioError, PayloadTooLargeError) as exc:  # that file's error, not the request's
            return file_error(path, exc)
    state.record(request, transcript)
    return file_record(path, transcript)
