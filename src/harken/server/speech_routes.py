"""`POST /v1/audio/speech`: OpenAI text-to-speech on local Piper voices, or in the own voice of a
model with a talker (Qwen2.5-Omni), streamed as synthesised."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from harken.audio.encode import SPEECH_FORMATS, get_speech_format
from harken.engines.piper import MAX_INPUT_CHARS
from harken.server.errors import error_responses
from harken.server.state import state_of

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["OpenAI"])


class SpeechRequest(BaseModel):
    # The service checks the text, format and speed (400 otherwise); the schema says the same.
    model: str | None = Field(
        None, description="a model with its own voice (a full Qwen2.5-Omni) speaks the text as its rendition; any "
                          "other name (tts-1, ...) is accepted for compatibility and the voice picks the Piper model",
        examples=["tts-1"],
    )
    input: str = Field(
        description="the text to speak", examples=["Ask not what your country can do for you."],
        json_schema_extra={"minLength": 1, "maxLength": MAX_INPUT_CHARS},
    )
    voice: str | None = Field(
        None, description="a Piper voice name or alias, or a speaker of the model's own voice (Chelsie, Ethan); "
                          "OpenAI voice names mean the default voice", examples=["alloy"]
    )
    response_format: str = Field(
        "mp3", description=", ".join(SPEECH_FORMATS), examples=["wav"], json_schema_extra={"enum": list(SPEECH_FORMATS)}
    )
    speed: float = Field(1.0, examples=[1.0], json_schema_extra={"minimum": 0.25, "maximum": 4.0})
    instructions: str | None = None  # OpenAI's style instructions; Piper voices have no use for them


_AUDIO = {"schema": {"type": "string", "format": "binary"}}


# 400: nothing to say, too long a text, an unknown voice, format or speed (a model's own voice has
# one speed); 503: the voice or model is not installed or does not load.
@router.post(
    "/audio/speech", summary="Text to speech (OpenAI)", response_class=StreamingResponse,
    responses={
        200: {"description": "the speech, streamed as it is synthesised",
              "content": {f.media_type: _AUDIO for f in SPEECH_FORMATS.values()}},
        **error_responses(400, 422, 503),
    },
)
async def speech(request: Request, body: SpeechRequest) -> StreamingResponse:
    state = state_of(request)
    service = state.service
    # Every request error is raised here, before the first byte: the stream below only synthesises.
    # In a thread: naming a model may load it.
    chunks = await asyncio.to_thread(service.speak_stream, body.input, voice=body.voice, speed=body.speed,
                                     format=body.response_format, model=body.model)
    fmt = get_speech_format(body.response_format)
    info = request.scope.get("state", {}).get("audit")
    if info is not None:
        info.model = service.choose_voice(body.voice, body.model).entry.name
    return StreamingResponse(chunks, media_type=fmt.media_type)
