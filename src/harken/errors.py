"""Every error harken raises on purpose, in one tree.

Front doors map these to their own shape (one CLI line, the OpenAI error envelope) through
`status` and `code`; anything outside this tree is a bug and is reported as an internal error.
A missing optional dependency goes through `require` / `needs_extra`, which name the extra and the
pip command that installs it for this installation (a source checkout or the package index).
"""

from __future__ import annotations

import functools
import importlib
import json
import os
from pathlib import Path
from types import ModuleType
from urllib.parse import unquote, urlparse

__all__ = [
    "HarkenError",
    "InvalidOptionError",
    "EmptyCommitError",
    "LiveSessionError",
    "AudioError",
    "AudioNotFoundError",
    "AudioDecodeError",
    "NoAudioStreamError",
    "EmptyAudioError",
    "AudioTooLongError",
    "DecodeLimitError",
    "ModelError",
    "UnknownModelError",
    "ModelNotInstalledError",
    "ModelIntegrityError",
    "ModelLoadError",
    "UnsupportedModelError",
    "CapabilityError",
    "UpstreamError",
    "UpstreamRejectedError",
    "AnswerCutError",
    "RequestError",
    "AuthenticationError",
    "ForbiddenError",
    "PayloadTooLargeError",
    "RateLimitError",
    "QueueFullError",
    "JobNotFoundError",
    "RequestTimeoutError",
    "MissingExtraError",
    "install_command",
    "needs_extra",
    "require",
    "error_type",
]

# The OpenAI error `type` for an HTTP status, where an error does not name its own.
_TYPES = {401: "authentication_error", 403: "permission_error", 404: "not_found_error", 429: "rate_limit_error"}


def error_type(status: int) -> str:
    return _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")


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


class EmptyCommitError(InvalidOptionError):
    """A live stream committed (almost) no audio."""

    code = "input_audio_buffer_commit_empty"


class LiveSessionError(HarkenError):
    """A live session ended on an internal error; the stream cannot go on."""

    status = 500
    code = "session_failed"
    type = "server_error"


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


class DecodeLimitError(AudioError):
    """Decoding the file needed more time or memory than it may (a decompression bomb, say)."""

    status = 413
    code = "decode_limit_exceeded"


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


class UnsupportedModelError(ModelError):
    """A directory or checkpoint harken cannot drive (not a model, or an unsupported family)."""

    code = "unsupported_model"


class CapabilityError(ModelError):
    code = "unsupported_task"


class UpstreamError(ModelError):
    """Every upstream of a remote model failed or broke off."""

    status = 503
    code = "upstream_unavailable"
    type = "server_error"


class UpstreamRejectedError(ModelError):
    """An upstream answered the request with a 4xx: its status and message, in harken's shape
    (an upstream's own type and numeric code, such as vLLM's, never reach the client)."""

    code = "upstream_rejected"

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message, param=param)
        self.status, self.type = status, error_type(status)
        if code:
            self.code = code


class AnswerCutError(ModelError):
    """A structured answer ended at the token limit before its JSON was complete."""

    code = "max_tokens_reached"


class RequestError(HarkenError):
    """Errors of a request as a whole rather than of its audio or model (mostly over HTTP)."""


class AuthenticationError(RequestError):
    status = 401
    code = "invalid_api_key"
    type = "authentication_error"


class ForbiddenError(RequestError):
    status = 403
    code = "forbidden"
    type = "permission_error"


class PayloadTooLargeError(RequestError):
    status = 413
    code = "payload_too_large"


class RateLimitError(RequestError):
    status = 429
    code = "rate_limit_exceeded"
    type = "rate_limit_error"

    def __init__(self, message: str, *, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class QueueFullError(RequestError):
    status = 503
    code = "queue_full"
    type = "server_error"
    retry_after = 1.0


class RequestTimeoutError(RequestError):
    """The request ran past its time limit."""

    status = 503
    code = "timeout"
    type = "server_error"
    retry_after = 5.0


class JobNotFoundError(RequestError):
    status = 404
    code = "job_not_found"
    type = "not_found_error"


class MissingExtraError(HarkenError):
    """A feature whose optional dependencies (one of harken's extras) are not installed."""

    status = 503
    code = "missing_extra"
    type = "server_error"


def needs_extra(what: str, extra: str, missing: str | None = None) -> str:
    """The one message for a missing extra: what needs it, which module is absent, the pip command."""
    absent = f" ({missing} is not installed)" if missing else ""
    return f"{what} needs the {extra} extra{absent}: {install_command(extra)}"


def require(module: str, extra: str, what: str) -> ModuleType:
    """`import module`, or MissingExtraError naming `extra` and how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(needs_extra(what, extra, exc.name or module)) from None


def install_command(extra: str) -> str:
    """The pip command that adds `extra` to harken as it is installed here: from its source tree
    (editable or not) or from the package index."""
    tree = _source_tree()
    if tree is None:
        return f"pip install 'harken[{extra}]'"
    root, editable = tree
    flag = "-e " if editable else ""
    try:
        here = Path.cwd().resolve() == root.resolve()
    except OSError:
        here = False
    target = "." if here else str(root)
    return f'pip install {flag}"{target}[{extra}]"'


@functools.cache
def _source_tree() -> tuple[Path, bool] | None:
    """(checkout root, editable) when harken runs from or was installed from a source tree."""
    # Imported straight from a checkout (an editable install, or PYTHONPATH=src).
    root = Path(__file__).resolve().parents[2]
    if _is_harken_tree(root):
        return root, True
    # Installed from a local directory: pip records it (PEP 610 direct_url.json).
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        text = distribution("harken").read_text("direct_url.json")
        info = json.loads(text) if text else {}
    except (PackageNotFoundError, ValueError, OSError):
        return None
    url = info.get("url", "") if isinstance(info, dict) else ""
    if "dir_info" in info and url.startswith("file://"):
        path = Path(unquote(urlparse(url).path))
        if _is_harken_tree(path):
            return path, bool(info["dir_info"].get("editable"))
    return None


def _is_harken_tree(path: Path) -> bool:
    try:
        text = (path / "pyproject.toml").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    return os.path.isdir(path / "src" / "harken") and 'name = "harken"' in text
