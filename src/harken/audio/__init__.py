"""Audio in: decoding any container to 16 kHz mono, and planning where to cut long audio."""

from harken.audio.decode import SAMPLE_RATE, Audio, AudioSource, load_audio

__all__ = ["SAMPLE_RATE", "Audio", "AudioSource", "load_audio"]
