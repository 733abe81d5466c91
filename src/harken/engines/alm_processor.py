"""Loading an audio-language model's processor, also where torchvision is missing.

The Qwen2.5-Omni and Qwen3-Omni processors insist on a video processor, and transformers' video
processors need torchvision, which has no CPU build on PyPI. Audio-only use never calls the
video processor, so when torchvision is absent harken builds the processor itself with
transformers' own torchvision-free `BaseVideoProcessor` in that slot. While it does, the
module-level names transformers uses for its type check point at the real classes instead of
the import-error stand-ins; they are restored right after.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["load_processor", "torchvision_free_video"]


def load_processor(path: Path):
    from transformers import AutoProcessor

    try:
        return AutoProcessor.from_pretrained(path)
    except ImportError as exc:
        if "torchvision" not in str(exc).lower():
            raise
    return _without_video(path)


@contextmanager
def torchvision_free_video() -> Iterator[None]:
    """Within the block, transformers accepts the torchvision-free video base classes."""
    import transformers
    from transformers import video_processing_utils as real

    names = ("BaseVideoProcessor", "VideoProcessorMixin")
    saved = {n: transformers.__dict__.get(n) for n in names}
    for name in names:
        if hasattr(real, name):
            setattr(transformers, name, getattr(real, name))
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                transformers.__dict__.pop(name, None)
            else:
                setattr(transformers, name, value)


def _without_video(path: Path):
    import transformers
    from transformers import AutoTokenizer, WhisperFeatureExtractor
    from transformers.video_processing_utils import BaseVideoProcessor

    config: dict[str, Any] = json.loads((path / "processor_config.json").read_text())
    processor_class = getattr(transformers, config["processor_class"])
    features = {k: v for k, v in config.get("feature_extractor", {}).items() if not k.endswith(("_type", "processor_class"))}
    kwargs: dict[str, Any] = dict(
        feature_extractor=WhisperFeatureExtractor(**features),
        tokenizer=AutoTokenizer.from_pretrained(path),
        video_processor=BaseVideoProcessor(),
        image_processor=_image_processor(config.get("image_processor", {})),
    )
    template = path / "chat_template.jinja"
    if template.is_file():
        kwargs["chat_template"] = template.read_text()
    with torchvision_free_video():
        return processor_class(**kwargs)


def _image_processor(config: dict[str, Any]):
    """The checkpoint's image processor, in its PIL form (the default form needs torchvision)."""
    import transformers

    name = config.get("image_processor_type", "Qwen2VLImageProcessor")
    settings = {k: v for k, v in config.items() if not k.endswith(("_type", "processor_class"))}
    for candidate in (name if name.endswith("Pil") else name + "Pil", name):
        try:
            return getattr(transformers, candidate)(**settings)
        except (AttributeError, ImportError):
            continue
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    return Qwen2VLImageProcessorPil()
