"""Async batch jobs: submit, follow, read results, cancel; webhooks when they end."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from harken.batch.local import TASKS, BatchSpec
from harken.errors import InvalidOptionError
from harken.server.errors import error_responses
from harken.server.state import state_of
from harken.tasks import BUILTIN_SCHEMAS

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["jobs"])


class JobRequest(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"inputs": ["/srv/audio/jfk.flac"], "task": "transcribe", "model": "whisper-1", "options": {"language": "en"}},
    ]})

    inputs: list[str] = Field(
        min_length=1, max_length=100_000, description="paths under the allowed media roots", examples=[["/srv/audio/jfk.flac"]]
    )
    # BatchSpec checks the task (400 otherwise); the schema says the same.
    task: str = Field("transcribe", json_schema_extra={"enum": list(TASKS)})
    model: str | None = Field(None, examples=["whisper-1"])
    options: dict[str, Any] = Field(default_factory=dict, description="question, schema, language, ...", examples=[{"language": "en"}])
    webhook_url: str | None = Field(None, description="a host in server.webhook_hosts", examples=["https://hooks.example.com/harken"])


class JobObject(BaseModel):
    """A job's progress, as every job route but results answers it (JobInfo.to_dict)."""

    id: str = Field(examples=["job_0123456789abcdef0123"])
    object: Literal["job"]
    status: Literal["queued", "running", "done", "cancelled"]
    total: int
    done: int
    failed: int
    created: float
    updated: float


JobId = Annotated[str, Path(description="the id POST /v1/jobs answered with", examples=["job_0123456789abcdef0123"])]
# Documented, not enforced (response_model=None): the answer is JobInfo.to_dict() as it stands.
_JOB = {200: {"model": JobObject, "description": "the job"}}
_UNKNOWN_JOB = error_responses(404, 422)


# 400: a bad task, option, schema or webhook; 403: an input outside the media roots or a webhook
# host not allowed; 404: an unknown model or a missing input.
@router.post(
    "/jobs", summary="Start an async batch job", response_model=None, responses={**_JOB, **error_responses(400, 403, 404, 422)}
)
async def create_job(request: Request, body: JobRequest) -> dict:
    state = state_of(request)
    schema = body.options.get("schema")
    if schema is not None and not (isinstance(schema, dict) or schema in BUILTIN_SCHEMAS):
        # A path would have the server read (and quote) any JSON file on its disk.
        raise InvalidOptionError("options.schema is a built-in schema name or a JSON Schema object", param="options.schema")
    spec = BatchSpec(task=body.task, model=body.model, format="json", options=body.options, workers=2)
    state.service.registry.resolve(body.model)
    # Every input is checked against the roots before anything runs (and read through the same
    # guard when the job gets to it).
    inputs = await asyncio.to_thread(lambda: [(p, str(state.media.local_file(p, param="inputs"))) for p in body.inputs])
    info = await asyncio.to_thread(state.jobs.submit, inputs, spec, body.webhook_url)
    return info.to_dict()


@router.get("/jobs/{job_id}", summary="A job's progress", response_model=None, responses={**_JOB, **_UNKNOWN_JOB})
async def get_job(request: Request, job_id: JobId) -> dict:
    return (await asyncio.to_thread(state_of(request).jobs.info, job_id)).to_dict()


@router.get(
    "/jobs/{job_id}/results", summary="A job's results as JSON lines", response_class=StreamingResponse,
    responses={200: {"description": "one JSON object per input, in input order",
                     "content": {"application/x-ndjson": {"schema": {"type": "string"}}}}, **_UNKNOWN_JOB},
)
async def job_results(request: Request, job_id: JobId) -> StreamingResponse:
    jobs = state_of(request).jobs
    await asyncio.to_thread(jobs.info, job_id)  # 404 before the stream starts
    return StreamingResponse(jobs.results(job_id), media_type="application/x-ndjson")


@router.delete("/jobs/{job_id}", summary="Cancel a job", response_model=None, responses={**_JOB, **_UNKNOWN_JOB})
async def cancel_job(request: Request, job_id: JobId) -> dict:
    return (await asyncio.to_thread(state_of(request).jobs.cancel, job_id)).to_dict()
