"""Settings: `HARKEN_*` environment variables over an optional harken.toml over defaults."""

from __future__ import annotations

import os
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from harken.errors import InvalidOptionError

__all__ = ["Settings", "ModelConfig", "ResultCacheSettings", "default_cache_dir"]

_config_file: ContextVar[Path | None] = ContextVar("harken_config_file", default=None)


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "harken"


class ModelConfig(BaseModel):
    """One catalogue entry from harken.toml (`[models.NAME]`)."""

    engine: str = "whisper"
    source: str = Field(description="a local directory, 'hf:ORG/REPO' (or ORG/REPO), or 'package:MODULE'")
    aliases: list[str] = Field(default_factory=list)
    options: dict[str, Any] = Field(default_factory=dict)


class ResultCacheSettings(BaseModel):
    memory_items: int = Field(256, ge=0, description="results kept in memory (LRU); 0 turns it off")
    disk: bool = Field(False, description="also keep results on disk under cache_dir/results")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="HARKEN_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    default_model: str = "whisper-tiny.en"
    cache_dir: Path = Field(default_factory=default_cache_dir)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    compute_type: str = Field("default", description="CTranslate2 compute type; default is int8 on CPU")
    cpu_threads: int = Field(0, ge=0, description="0 lets the engine use every core")
    warmup: bool = Field(True, description="run a tiny inference when a model loads")
    max_audio_s: float = Field(4 * 3600.0, gt=0, description="longest clip accepted, in seconds")
    result_cache: ResultCacheSettings = Field(default_factory=ResultCacheSettings)
    models: dict[str, ModelConfig] = Field(default_factory=dict)
    aliases: dict[str, str] = Field(default_factory=dict)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = _config_file.get()
        if toml is None:
            env_path = os.environ.get("HARKEN_CONFIG")
            toml = Path(env_path) if env_path else Path("harken.toml")
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_file=toml))

    @classmethod
    def load(cls, config: str | Path | None = None, **overrides: Any) -> Settings:
        """Build settings, reading `config` (or $HARKEN_CONFIG, or ./harken.toml) when present."""
        if config is not None and not Path(config).is_file():
            raise InvalidOptionError(f"config file not found: {config}", param="config")
        token = _config_file.set(Path(config) if config is not None else None)
        try:
            return cls(**overrides)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "settings"
            raise InvalidOptionError(f"bad setting {where}: {first['msg']}", param=where) from None
        finally:
            _config_file.reset(token)
