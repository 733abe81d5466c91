"""Async batch jobs: submit, follow, read results, cancel; webhooks when they end."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from harken.batch.local import BatchSpec
from harken.errors import InvalidOptionError
from harken.server.state import state_of
from harken.tasks import BUILTIN_SCHEMAS

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["jobs"])


class JobRequest(BaseModel):
    inputs: list[str] = Field(min_length=1, max_length=100_000, description="paths under the allowed media roots")
    task: str = "transcribe"
    model: str | None = None
    options: dict[str, Any] = Field(default_factory=dict, description="question, schema, language, ...")
    webhook_url: str | None = None


@router.post("/jobs", summary="Start an async batch job")
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


@router.get("/jobs/{job_id}", summary="A job's progress")
async def get_job(request: Request, job_id: str) -> dict:
    return (await asyncio.to_thread(state_of(request).jobs.info, job_id)).to_dict()


@router.get("/jobs/{job_id}/results", summary="A job's results as JSON lines")
async def job_results(request: Request, job_id: str) -> StreamingResponse:
    jobs = state_of(request).jobs
    await asyncio.to_thread(jobs.info, job_id)  # 404 before the stream starts
    return StreamingResponse(jobs.results(job_id), media_type="application/x-ndjson")


@router.delete("/jobs/{job_id}", summary="Cancel a job")
async def cancel_job(request: Request, job_id: str) -> dict:
    return (await asyncio.to_thread(state_of(request).jobs.cancel, job_id)).to_dict()
