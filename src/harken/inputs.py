"""What a user may name as audio on the command line: a file, `-` (stdin), a folder, a URL.

Each argument becomes one or more `Input`s: a label for messages, a stem for output names,
and the bytes (or path) to decode. A folder is searched recursively for audio and video files;
`file://` URLs are local paths; `http(s)://` URLs are fetched (the CLI runs on the user's own
machine, so fetching what they name is theirs to decide; the server never fetches URLs).
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from harken.audio import AudioSource, RawAudio, read_audio
from harken.errors import AudioNotFoundError

__all__ = ["AUDIO_SUFFIXES", "Input", "MEDIA_SUFFIXES", "expand", "fetch_url", "unique_stem"]

# The audio files an evaluation folder's clips are (harken.evaluation.datasets).
AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".mp3", ".m4a", ".aac", ".ogg", ".opus", ".webm", ".aiff", ".aif", ".mp4"})
# What a folder given to `harken transcribe` or `harken batch` is searched for: every container
# people keep speech in, video files included (they carry their soundtrack).
MEDIA_SUFFIXES = AUDIO_SUFFIXES | {".oga", ".wma", ".amr", ".mka", ".m4v", ".mov", ".mkv", ".avi", ".3gp"}
URL_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Input:
    label: str  # how messages name it: the argument, or the file found in a folder
    stem: str  # output files are named after it
    source: AudioSource | RawAudio  # bytes come named, so that decoding errors say where they came from


def expand(argument: str, *, stdin: BinaryIO | None = None) -> list[Input]:
    """The inputs one argument names. A folder is searched recursively; a folder with no media
    in it, or a URL that cannot be fetched, raises AudioNotFoundError (empty stdin: EmptyAudioError). A path that does not exist
    is returned as it is: decoding reports it, in turn with the other files."""
    if argument == "-":
        return [Input("stdin", "stdin", read_audio((stdin or sys.stdin.buffer).read(), name="stdin"))]
    if argument.startswith(("http://", "https://")):
        return [Input(argument, _url_stem(argument), read_audio(fetch_url(argument), name=argument))]
    if argument.startswith("file:"):
        return _local(argument, Path(urllib.request.url2pathname(urllib.parse.urlparse(argument).path)))
    return _local(argument, Path(argument))


def _local(argument: str, path: Path) -> list[Input]:
    if not path.is_dir():
        return [Input(argument, path.stem, str(path))]
    found = sorted(p for p in path.rglob("*") if p.suffix.lower() in MEDIA_SUFFIXES and p.is_file())
    if not found:
        raise AudioNotFoundError(f"{argument}: a folder with no audio or video files in it")
    return [Input(str(p), p.stem, str(p)) for p in found]


def fetch_url(url: str) -> bytes:
    """The body of an http(s) URL; a failure is one AudioNotFoundError line."""
    try:
        with urllib.request.urlopen(url, timeout=URL_TIMEOUT_S) as response:  # noqa: S310 (http/https only)
            return response.read()
    except urllib.error.HTTPError as exc:
        raise AudioNotFoundError(f"{url}: the server answered {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise AudioNotFoundError(f"{url}: cannot fetch it ({reason})") from None


def _url_stem(url: str) -> str:
    name = Path(urllib.parse.unquote(urllib.parse.urlparse(url).path)).stem
    return name or urllib.parse.urlparse(url).hostname or "download"


def unique_stem(stem: str, taken: set[str]) -> str:
    """`stem`, or `stem-2`, `stem-3`... when an earlier input already took it (`harken transcribe
    --output` and `harken batch` name their files by this one rule)."""
    name, n = stem, 1
    while name in taken:
        n += 1
        name = f"{stem}-{n}"
    return name
