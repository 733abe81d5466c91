"""Reading and writing files safely: only regular files are read, and nothing half-written is seen."""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path

from collections.abc import Sequence

from harken.errors import ForbiddenError, InvalidOptionError, PayloadTooLargeError

__all__ = ["NotRegularFileError", "PathGuard", "describe_os_error", "read_regular", "write_atomic"]

_UMASK = os.umask(0o022)
os.umask(_UMASK)


class NotRegularFileError(OSError):
    """A FIFO, a device, a socket or a folder where a file was expected."""


def read_regular(path: Path, *, max_bytes: int | None = None, follow_symlinks: bool = True) -> bytes:
    """The bytes of the regular file at `path`, at most `max_bytes` of them.

    Anything else is refused before a byte is read: opening is non-blocking, so a FIFO or a
    device cannot hang the reader, and the check is made on the opened file, so a file swapped
    after a path check is still caught. Without `follow_symlinks`, a link as the last part of the
    path is refused (ELOOP). Raises OSError (FileNotFoundError, NotRegularFileError, ...) or
    PayloadTooLargeError.
    """
    if "\0" in os.fspath(path):
        raise FileNotFoundError(errno.ENOENT, "a path cannot hold a NUL byte")
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    if not follow_symlinks:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags)
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotRegularFileError(errno.EINVAL, "not a regular file", str(path))
        if max_bytes is not None and info.st_size > max_bytes:
            raise PayloadTooLargeError(f"{path.name} is larger than {_mb(max_bytes)}")
        data = f.read() if max_bytes is None else f.read(max_bytes + 1)
    if max_bytes is not None and len(data) > max_bytes:  # it grew while being read
        raise PayloadTooLargeError(f"{path.name} is larger than {_mb(max_bytes)}")
    return data


class PathGuard:
    """Which local files may be opened: any (`roots` None), or only those whose real path, with
    every symlink and `..` resolved, lies under one of `roots`. The server has one, made from
    `allowed_media_roots`, and every file it opens for a request goes through it.
    """

    def __init__(self, roots: Sequence[Path] | None = None, *, max_bytes: int | None = None) -> None:
        self.roots = None if roots is None else [Path(os.path.realpath(r)) for r in roots]
        self.max_bytes = max_bytes

    def check(self, path: str | os.PathLike) -> Path:
        """The real path behind `path`; ForbiddenError when it lies outside the roots."""
        text = os.fspath(path)
        if "\0" in text:
            raise InvalidOptionError("a path cannot hold a NUL byte")
        real = Path(os.path.realpath(text))
        if self.roots is not None and not any(real == root or real.is_relative_to(root) for root in self.roots):
            raise ForbiddenError(f"{Path(text).name or text}: outside the allowed media roots")
        return real

    def read(self, path: str | os.PathLike) -> bytes:
        """The bytes of a regular file inside the roots (OSError, ForbiddenError or PayloadTooLargeError)."""
        # The real path has no links in it: one there now was put there after the check.
        return read_regular(self.check(path), max_bytes=self.max_bytes, follow_symlinks=False)


def describe_os_error(exc: OSError) -> str:
    """A few plain words for why a file could not be read, without the path."""
    if isinstance(exc, NotRegularFileError):
        return "not a regular file"
    if isinstance(exc, (FileNotFoundError, NotADirectoryError)):
        return "no such file"
    if isinstance(exc, IsADirectoryError):
        return "a folder, not a file"
    if isinstance(exc, PermissionError):
        return "permission denied"
    return exc.strerror or "cannot be read"


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):g} MB"


def write_atomic(path: Path, data: bytes | str, *, durable: bool = False, suffix: str = "") -> None:
    """Write `data` to a temporary file beside `path`, then rename it into place.

    `durable` also syncs the bytes to disk before the rename (for outputs a job store will call
    done). The temporary name is `.<name>.<random><suffix>`; it is removed if writing fails.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp's 0600 would surprise whoever reads the file
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
