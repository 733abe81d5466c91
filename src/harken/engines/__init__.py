"""Model engines: each declares what it can do and does it on decoded audio."""

from harken.engines.base import Capability, Engine, TranscribeOptions

__all__ = ["Capability", "Engine", "TranscribeOptions"]
