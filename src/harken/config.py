"""Settings: `HARKEN_*` environment variables over an optional harken.toml over defaults."""

from __future__ import annotations

import os
import re
import tomllib
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from harken.errors import InvalidOptionError

__all__ = ["Settings", "ModelConfig", "DecodeSettings", "ResultCacheSettings", "SchedulerSettings", "ServerSettings", "default_cache_dir"]

_config_file: ContextVar[Path | None] = ContextVar("harken_config_file", default=None)


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "harken"


def _split_list(value: Any) -> Any:
    # HARKEN_API_KEYS=a,b reads better than JSON; toml and Python give real lists.
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def _split_paths(value: Any) -> Any:
    # Directories also split like $PATH.
    return _split_list(value.replace(os.pathsep, ",")) if isinstance(value, str) else value


class ModelConfig(BaseModel):
    """One catalogue entry from harken.toml (`[models.NAME]`)."""

    engine: str = "whisper"
    source: str = Field(description="a local directory, 'hf:ORG/REPO' (or ORG/REPO), or 'package:MODULE'")
    aliases: list[str] = Field(default_factory=list)
    options: dict[str, Any] = Field(default_factory=dict)


class ResultCacheSettings(BaseModel):
    memory_items: int = Field(256, ge=0, description="results kept in memory (LRU); 0 turns it off")
    memory_mb: float = Field(64.0, ge=0, description="most memory the in-memory results may take (their JSON text)")
    disk: bool = Field(False, description="also keep results on disk under cache_dir/results")


class DecodeSettings(BaseModel):
    isolation: Literal["process", "inline"] = Field(
        "process", description="decode each file in a child process, so a decoder crash or runaway costs that file only; "
        "or inline, in this process",
    )
    concurrency: int = Field(0, ge=0, description="files decoded at once; 0: one per core")
    timeout_s: float = Field(300.0, gt=0, description="longest one file may take to decode")


class SchedulerSettings(BaseModel):
    queue_size: int = Field(64, ge=1, description="requests waiting per model before new ones are refused (503)")
    max_batch: int = Field(8, ge=1, le=64, description="requests joined into one engine call")
    concurrency: int = Field(1, ge=1, description="worker threads per model")
    batch_window_ms: float = Field(50.0, ge=0, description="longest wait for requests still being decoded")


class ServerSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    max_upload_mb: float = Field(25.0, gt=0, description="largest upload accepted (413 above)")
    rate_limit_per_minute: int = Field(0, ge=0, description="requests per API key (or client address) per minute; 0 is off")
    request_timeout_s: float = Field(600.0, gt=0)
    cors_origins: list[str] = Field(default_factory=list, description="empty: CORS off")
    audit_log: Path | None = Field(None, description="JSON-lines audit trail; off when unset")
    audit_text: bool = Field(False, description="also put result text in the audit trail")
    keep_uploads: Path | None = Field(None, description="a directory to keep uploaded audio in; off when unset")
    url_timeout_s: float = Field(10.0, gt=0, description="time limit for fetching an http(s) audio URL")
    url_max_mb: float = Field(25.0, gt=0, description="largest http(s) audio accepted")
    jobs_dir: Path | None = Field(None, description="where async jobs live (default: cache_dir/jobs)")
    webhook_hosts: list[str] = Field(default_factory=list, description="hosts job webhooks may be sent to")
    webhook_secret: str | None = Field(None, description="HMAC-SHA256 key that signs webhook bodies")
    model_roots: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        description="directories under which clients may name a model directory as `model`; empty: catalogue names and aliases only",
    )
    auth_failures_per_minute: int = Field(
        10, ge=0, description="failed API-key attempts a client address may make per minute before it is refused (429); 0 is off",
    )
    live_streams: int = Field(8, ge=1, description="live transcription streams (realtime sockets and Wyoming) open at once")
    live_idle_s: float = Field(120.0, gt=0, description="a live stream that sends nothing for this long is closed")
    wyoming_port: int | None = Field(None, ge=0, le=65535, description="also serve Home Assistant's Wyoming protocol on this TCP port")

    _split_dirs = field_validator("model_roots", mode="before")(_split_paths)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="HARKEN_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    default_model: str = "whisper-tiny.en"
    default_voice: str = "piper-joe"
    default_diarizer: str = "ge2e-diarizer"
    cache_dir: Path = Field(default_factory=default_cache_dir)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    compute_type: str = Field("default", description="CTranslate2 compute type; default is int8 on CPU")
    workers: int = Field(0, ge=0, description="parallel CTranslate2 workers; 0: one per core on CPU (at most 4), one on GPU")
    cpu_threads: int = Field(0, ge=0, description="threads per worker; 0: the cores shared among the workers")
    warmup: bool = Field(True, description="run a tiny inference when a model loads")
    max_audio_s: float = Field(4 * 3600.0, gt=0, description="longest clip accepted, in seconds")
    result_cache: ResultCacheSettings = Field(default_factory=ResultCacheSettings)
    decode: DecodeSettings = Field(default_factory=DecodeSettings)
    models: dict[str, ModelConfig] = Field(default_factory=dict)
    aliases: dict[str, str] = Field(default_factory=dict)
    scheduler: SchedulerSettings = Field(default_factory=SchedulerSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list, description="bearer keys; empty: no auth")
    api_keys_file: Path | None = Field(None, description="a file with one API key per line")
    allowed_media_roots: Annotated[list[Path], NoDecode] = Field(
        default_factory=list, description="directories local audio paths may be read from; empty: none"
    )
    allowed_url_domains: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="hosts http(s) audio may be fetched from; empty: no fetching"
    )

    _split = field_validator("api_keys", "allowed_url_domains", mode="before")(_split_list)
    _split_dirs = field_validator("allowed_media_roots", mode="before")(_split_paths)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_file=_toml_path()))

    @classmethod
    def load(cls, config: str | Path | None = None, **overrides: Any) -> Settings:
        """Build settings, reading `config` (or $HARKEN_CONFIG, or ./harken.toml) when present."""
        if config is not None and not Path(config).is_file():
            raise InvalidOptionError(f"config file not found: {config}", param="config")
        token = _config_file.set(Path(config) if config is not None else None)
        try:
            return cls(**overrides)
        except tomllib.TOMLDecodeError as exc:
            raise InvalidOptionError(_toml_error(_toml_path(), exc), param="config") from None
        except UnicodeDecodeError as exc:
            path = _toml_path()
            line = _line_of(path, exc.start)
            raise InvalidOptionError(
                f"{_shown(path)}, line {line}: not UTF-8 text ({exc.reason}); save the file as UTF-8", param="config"
            ) from None
        except OSError as exc:
            if exc.filename is None or Path(exc.filename) != _toml_path():
                raise
            raise InvalidOptionError(  # a settings file that exists but cannot be read
                f"cannot read {_shown(_toml_path())}: {exc.strerror or exc}; fix its permissions or name another file with --config",
                param="config",
            ) from None
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "settings"
            raise InvalidOptionError(f"bad setting {where}: {first['msg']}", param=where) from None
        finally:
            _config_file.reset(token)


def _toml_path() -> Path:
    """The settings file read: `--config`, else $HARKEN_CONFIG, else ./harken.toml."""
    toml = _config_file.get()
    if toml is None:
        env_path = os.environ.get("HARKEN_CONFIG")
        toml = Path(env_path) if env_path else Path("harken.toml")
    return toml


def _shown(path: Path) -> str:
    return str(path) if path.is_absolute() else os.path.abspath(path)


_TOML_WHERE = re.compile(r"^(?P<msg>.*) \(at line (?P<line>\d+), column (?P<col>\d+)\)$", re.S)


def _toml_error(path: Path, exc: tomllib.TOMLDecodeError) -> str:
    """`FILE, line L, column C: invalid TOML: the parser's message; the fix`, from tomllib's error."""
    text = str(exc)
    match = _TOML_WHERE.match(text)
    if match:
        place, message = f"{_shown(path)}, line {match['line']}, column {match['col']}", match["msg"]
    elif text.endswith(" (at end of document)"):
        place, message = f"{_shown(path)}, at the end", text.removesuffix(" (at end of document)")
    else:
        place, message = _shown(path), text
    return f"{place}: invalid TOML: {message}; fix the file there (TOML: key = value, [table], strings in quotes)"


def _line_of(path: Path, offset: int) -> int:
    try:
        return path.read_bytes()[:offset].count(b"\n") + 1
    except OSError:
        return 1
