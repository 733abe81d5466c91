"""Where model files come from: bundled packages, local directories, the Hugging Face hub.

Bundled weights are pinned by sha256 and checked once; the check is remembered in
`cache_dir/verified.json` keyed by size and modification time, so later loads are free.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from harken.errors import ModelIntegrityError, ModelNotInstalledError, needs_extra
from harken.files import write_atomic

__all__ = ["Source", "PackageSource", "SplitPackageSource", "LocalSource", "HubSource", "RemoteSource", "parse_source"]


class Source(Protocol):
    def installed(self) -> bool: ...

    def resolve(self, cache_dir: Path) -> Path | None:
        """Return a local directory holding the model, verifying pinned files once
        (None for a model that has no local files: a remote upstream)."""
        ...

    def size_bytes(self) -> int | None: ...


def _package_dir(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(files: dict[Path, str], cache_dir: Path) -> None:
    """Check each file against its pinned sha256, hashing only files not checked before."""
    stamp_path = cache_dir / "verified.json"
    try:
        stamps = json.loads(stamp_path.read_text())
    except (OSError, ValueError):
        stamps = {}
    changed = False
    for path, expected in files.items():
        st = path.stat()
        key = str(path.resolve())
        if stamps.get(key) == [st.st_size, st.st_mtime_ns, expected]:
            continue
        actual = _sha256(path)
        if actual != expected:
            raise ModelIntegrityError(f"{path.name} does not match its pinned sha256 (corrupt or altered install)")
        stamps[key] = [st.st_size, st.st_mtime_ns, expected]
        changed = True
    if changed:
        cache_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(stamp_path, json.dumps(stamps, indent=1))


@dataclass(frozen=True)
class PackageSource:
    """A model directory inside an installed Python package."""

    module: str
    subdir: str
    extra: str
    pins: dict[str, str] = field(default_factory=dict)

    def _dir(self) -> Path | None:
        root = _package_dir(self.module)
        return None if root is None else root / self.subdir

    def installed(self) -> bool:
        path = self._dir()
        return path is not None and path.is_dir()

    def resolve(self, cache_dir: Path) -> Path:
        path = self._dir()
        if path is None:
            raise ModelNotInstalledError(_needs_package(self.module, self.extra))
        if not path.is_dir():
            raise ModelNotInstalledError(
                f"the {self.module} package has no {self.subdir!r} directory ({path}); check the model's source "
                f"(package:{self.module}/SUBDIR) in harken.toml, or reinstall the package"
            )
        verify({path / name: sha for name, sha in self.pins.items()}, cache_dir)
        return path

    def size_bytes(self) -> int | None:
        path = self._dir()
        return _dir_size(path) if path is not None and path.is_dir() else None


@dataclass(frozen=True)
class SplitPackageSource:
    """A model whose model.bin ships in parts across packages, joined once into the cache."""

    name: str
    parts: tuple[tuple[str, str, str], ...]  # (module, file inside data/, sha256)
    side_files: tuple[tuple[str, str, str], ...]  # (module, file inside data/, sha256)
    joined_sha256: str
    extra: str

    def installed(self) -> bool:
        return all(_package_dir(module) is not None for module, _, _ in self.parts + self.side_files)

    def size_bytes(self) -> int | None:
        if not self.installed():
            return None
        return sum((_package_dir(m) / "data" / f).stat().st_size for m, f, _ in self.parts + self.side_files)

    def resolve(self, cache_dir: Path) -> Path:
        missing = [module for module, _, _ in self.parts + self.side_files if _package_dir(module) is None]
        if missing:
            raise ModelNotInstalledError(_needs_package(missing[0], self.extra))
        target = cache_dir / "models" / self.name
        model_bin = target / "model.bin"
        if not model_bin.is_file():
            self._join(target, cache_dir)
        pins = {model_bin: self.joined_sha256}
        pins.update({target / f: sha for _, f, sha in self.side_files})
        verify(pins, cache_dir)
        return target

    def _join(self, target: Path, cache_dir: Path) -> None:
        sources = {(_package_dir(m) / "data" / f): sha for m, f, sha in self.parts + self.side_files}
        verify(sources, cache_dir)
        target.mkdir(parents=True, exist_ok=True)
        for module, name, _ in self.side_files:
            shutil.copyfile(_package_dir(module) / "data" / name, target / name)
        fd, tmp = tempfile.mkstemp(dir=target, prefix=".model.bin.")
        with os.fdopen(fd, "wb") as out:
            for module, name, _ in self.parts:
                with (_package_dir(module) / "data" / name).open("rb") as part:
                    shutil.copyfileobj(part, out, 1 << 22)
        os.replace(tmp, target / "model.bin")


@dataclass(frozen=True)
class LocalSource:
    path: Path

    def installed(self) -> bool:
        return self.path.is_dir()

    def resolve(self, cache_dir: Path) -> Path:
        if not self.path.is_dir():
            raise ModelNotInstalledError(f"model directory not found: {self.path}")
        return self.path

    def size_bytes(self) -> int | None:
        return _dir_size(self.path) if self.path.is_dir() else None


@dataclass(frozen=True)
class RemoteSource:
    """One or more OpenAI-compatible upstreams (vLLM, another harken) serving the model."""

    urls: tuple[str, ...]

    def installed(self) -> bool:
        return True

    def resolve(self, cache_dir: Path) -> None:
        return None

    def size_bytes(self) -> int | None:
        return None


@dataclass(frozen=True)
class HubSource:
    """A Hugging Face hub repository: the local cache when offline, a download when online."""

    repo_id: str

    @staticmethod
    def _offline() -> bool:
        return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")

    def _cached(self) -> Path | None:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError

        try:
            return Path(snapshot_download(self.repo_id, local_files_only=True))
        except (LocalEntryNotFoundError, OSError, ValueError):
            return None

    def installed(self) -> bool:
        return self._cached() is not None

    def resolve(self, cache_dir: Path) -> Path:
        cached = self._cached()
        if cached is not None:
            return cached
        if self._offline():
            raise ModelNotInstalledError(self._not_downloaded("HF_HUB_OFFLINE is set"))
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError

        try:
            return Path(snapshot_download(self.repo_id))
        except LocalEntryNotFoundError as exc:  # the hub could not be reached, and nothing is cached
            raise ModelNotInstalledError(self._not_downloaded(f"no network: {_root_cause(exc)}")) from None
        except GatedRepoError:
            raise ModelNotInstalledError(
                f"{self.repo_id} is gated on the Hugging Face hub: accept its terms on its hub page, log in with "
                "`hf auth login`, then load it again"
            ) from None
        except RepositoryNotFoundError:
            raise ModelNotInstalledError(
                f"no repository {self.repo_id!r} on the Hugging Face hub (misspelt, or private: log in with "
                "`hf auth login`); check the model's source in harken.toml"
            ) from None
        except Exception as exc:  # the hub client raises many unrelated types for one cause
            raise ModelNotInstalledError(f"cannot download {self.repo_id} from the Hugging Face hub: {_root_cause(exc)}") from None

    def _not_downloaded(self, why: str) -> str:
        from huggingface_hub.constants import HF_HUB_CACHE

        return (
            f"model {self.repo_id} is not downloaded (not in the Hugging Face cache {HF_HUB_CACHE}) and the hub "
            f"cannot be reached ({why}): run `hf download {self.repo_id}` on a machine that reaches the hub and copy "
            f"its cache into {HF_HUB_CACHE} (or set HF_HOME), or point the model's source at a local directory"
        )

    def size_bytes(self) -> int | None:
        cached = self._cached()
        return _dir_size(cached) if cached is not None else None


def parse_source(text: str, base: Path | None = None) -> Source:
    """`package:MODULE[/SUBDIR]`, `hf:ORG/REPO`, http(s) base URLs (comma-separated), a directory
    path, or ORG/REPO."""
    if text.startswith(("http://", "https://")):
        return RemoteSource(tuple(u.strip().rstrip("/") for u in text.split(",") if u.strip()))
    if text.startswith("package:"):
        module, _, subdir = text[len("package:") :].partition("/")
        return PackageSource(module, subdir or ".", extra=module)
    if text.startswith("hf:"):
        return HubSource(text[3:])
    path = Path(text).expanduser()
    if not path.is_absolute() and base is not None:
        path = base / path
    if path.exists() or text.startswith((".", "/", "~")) or text.count("/") != 1:
        return LocalSource(path)
    return HubSource(text)


def _needs_package(module: str, extra: str) -> str:
    """A model's package is missing: name harken's extra that brings it, or the package itself."""
    if extra in _harken_extras():
        return needs_extra("this model", extra, module)
    return f"this model's files come from the Python package {module}, which is not installed: pip install {module}"


def _harken_extras() -> set[str]:
    from importlib.metadata import PackageNotFoundError, metadata

    try:
        return set(metadata("harken").get_all("Provides-Extra") or ())
    except PackageNotFoundError:  # run from a source tree that was never installed
        return {"embedded", "multilingual", "alm", "server", "tts", "ray", "eval"}


def _root_cause(exc: BaseException) -> str:
    """The innermost cause's type and first line: ConnectError: [Errno 111] Connection refused."""
    seen: set[int] = set()
    while (inner := exc.__cause__ or exc.__context__) is not None and id(inner) not in seen:
        seen.add(id(exc))
        exc = inner
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:160]}" if text else type(exc).__name__
