"""Audio in: decoding any container to 16 kHz mono, and planning where to cut long audio."""

from harken.audio.decode import SAMPLE_RATE, Audio, AudioSource, RawAudio, decode_audio, load_audio, named_bytes, read_audio

__all__ = ["SAMPLE_RATE", "Audio", "AudioSource", "RawAudio", "decode_audio", "load_audio", "named_bytes", "read_audio"]
