"""Every error harken raises on purpose, in one tree.

Front doors map these to their own shape (one CLI line, the OpenAI error envelope) through
`status` and `code`; anything outside this tree is a bug and is reported as an internal error.
"""

from __future__ import annotations

__all__ = [
    "HarkenError",
    "InvalidOptionError",
    "AudioError",
    "AudioNotFoundError",
    "AudioDecodeError",
    "NoAudioStreamError",
    "EmptyAudioError",
    "AudioTooLongError",
    "ModelError",
    "UnknownModelError",
    "ModelNotInstalledError",
    "ModelIntegrityError",
    "ModelLoadError",
    "CapabilityError",
]


class HarkenError(Exception):
    """Base of every expected error. `message` is one plain line meant for a user."""

    status: int = 400
    code: str = "invalid_request"
    type: str = "invalid_request_error"

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class InvalidOptionError(HarkenError):
    code = "invalid_option"


class AudioError(HarkenError):
    code = "invalid_audio"


class AudioNotFoundError(AudioError):
    status = 404
    code = "audio_not_found"


class AudioDecodeError(AudioError):
    status = 415
    code = "unsupported_audio"


class NoAudioStreamError(AudioError):
    status = 415
    code = "no_audio_stream"


class EmptyAudioError(AudioError):
    code = "empty_audio"


class AudioTooLongError(AudioError):
    status = 413
    code = "audio_too_long"


class ModelError(HarkenError):
    code = "model_error"


class UnknownModelError(ModelError):
    status = 404
    code = "model_not_found"


class ModelNotInstalledError(ModelError):
    status = 503
    code = "model_not_installed"
    type = "server_error"


class ModelIntegrityError(ModelError):
    status = 503
    code = "model_integrity"
    type = "server_error"


class ModelLoadError(ModelError):
    status = 503
    code = "model_load_failed"
    type = "server_error"


class CapabilityError(ModelError):
    code = "unsupported_task"
