"""`POST /v1/audio/speech`: OpenAI text-to-speech on local Piper voices, streamed as synthesised."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from harken.audio.encode import get_speech_format
from harken.server.state import state_of

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["OpenAI"])


class SpeechRequest(BaseModel):
    model: str | None = Field(None, description="accepted for compatibility (tts-1, ...); the voice picks the Piper model")
    input: str
    voice: str | None = Field(None, description="a Piper voice name or alias; OpenAI voice names mean the default voice")
    response_format: str = Field("mp3", description="mp3, opus, aac, flac, wav or pcm")
    speed: float = 1.0
    instructions: str | None = None  # OpenAI's style instructions; Piper voices have no use for them


@router.post("/audio/speech", summary="Text to speech (OpenAI)")
async def speech(request: Request, body: SpeechRequest) -> StreamingResponse:
    state = state_of(request)
    # Every request error is raised here, before the first byte: the stream below only synthesises.
    chunks = state.service.speak_stream(body.input, voice=body.voice, speed=body.speed, format=body.response_format)
    fmt = get_speech_format(body.response_format)
    info = request.scope.get("state", {}).get("audit")
    if info is not None:
        info.model = state.service.registry.resolve_voice(body.voice).name
    return StreamingResponse(chunks, media_type=fmt.media_type)
