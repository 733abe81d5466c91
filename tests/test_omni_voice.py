"""Qwen2.5-Omni answering in its own voice (talker + token2wav), on a tiny random full checkpoint.

The speech of random weights is noise (near silence): these tests check formats, rates,
durations, streaming and the choice of voice, never what is said.
"""

from __future__ import annotations

import base64
import io
import time
import wave

import httpx
import openai
import pytest

from harken import Service, Settings, load_audio
from harken.engines.alm import OMNI_SPEECH_PROMPT
from harken.engines.chat import ChatMessage, TextPart
from harken.errors import InvalidOptionError
from harken.service import SpeakAnswer
from tests.live_server import live_server
from tests.tiny_omni import SPEAKERS, build_qwen2_5_omni_full

RATE = 24_000  # Qwen2.5-Omni's vocoder rate
PIPER_RATE = 22_050  # the embedded Piper voice's
ASK = [{"role": "user", "content": "Say something."}]


@pytest.fixture(scope="module")
def omni_settings(cache_dir, tmp_path_factory) -> Settings:
    path = str(build_qwen2_5_omni_full(tmp_path_factory.mktemp("tiny-omni-full") / "qwen2.5-omni"))
    return Settings.load(cache_dir=cache_dir, models={
        # A short talker limit keeps each spoken answer to a fraction of a second of (noise) speech.
        "omni": {"engine": "alm", "source": path, "options": {"talker_max_new_tokens": 16}},
        # The same checkpoint without its talker: a model that cannot speak, so Piper reads for it.
        "omni-text": {"engine": "alm", "source": path, "options": {"audio_output": False}},
    })


@pytest.fixture(scope="module")
def omni_service(omni_settings) -> Service:
    return Service(omni_settings)


@pytest.fixture(scope="module")
def omni_server(omni_settings):
    with live_server(omni_settings) as url:
        yield url


def _wav(data: bytes) -> tuple[int, int]:
    """(rate, frames) of 16-bit mono WAV bytes, read with the standard library. harken writes
    WAV as it streams it, with open-ended sizes in the header, so the frames are counted as read."""
    with wave.open(io.BytesIO(data)) as w:
        assert (w.getnchannels(), w.getsampwidth()) == (1, 2)
        return w.getframerate(), len(w.readframes(len(data))) // 2


def test_the_full_checkpoint_loads_with_its_talker_and_answers_text_as_before(omni_service):
    omni = omni_service.load_model("omni").engine
    text_only = omni_service.load_model("omni-text").engine
    assert omni.voices == SPEAKERS and omni.default_voice == "Chelsie" and omni.speech_rate == RATE
    assert text_only.voices == () and text_only.talker is None and text_only.speech_rate is None
    asked = [ChatMessage("user", (TextPart("Hello?"),))]
    # Text out from the full model (generation_mode "text") is the thinker-only model's, token for token.
    full = omni_service.chat(asked, model="omni", max_new_tokens=5, use_cache=False)
    thinker = omni_service.chat(asked, model="omni-text", max_new_tokens=5, use_cache=False)
    assert (full.text, full.completion_tokens, full.prompt_tokens) == (thinker.text, thinker.completion_tokens, thinker.prompt_tokens)
    assert full.speech is None


def test_service_chat_speaks_in_the_models_own_voice(omni_service):
    asked = [ChatMessage("user", (TextPart("Hello?"),))]
    plain = omni_service.chat(asked, model="omni", max_new_tokens=4, use_cache=False)
    spoken = omni_service.chat(asked, model="omni", max_new_tokens=4, speak=SpeakAnswer("ethan", "wav"))
    speech = spoken.speech
    assert speech is not None and (speech.voice, speech.model, speech.format) == ("Ethan", "omni", "wav")
    rate, frames = _wav(speech.data)
    assert rate == speech.sample_rate == RATE and frames > 0 and speech.duration == pytest.approx(frames / RATE, abs=1e-3)
    assert speech.transcript == spoken.text
    # No system message: Qwen's own (longer) speaking prompt replaced the template's default one.
    assert spoken.prompt_tokens > plain.prompt_tokens
    with_system = [ChatMessage("system", (TextPart(OMNI_SPEECH_PROMPT),)), *asked]
    assert omni_service.chat(with_system, model="omni", max_new_tokens=4, speak=True).prompt_tokens == spoken.prompt_tokens
    # The same own voice reads a given text (Service.speak with the model), as its rendition.
    said = omni_service.speak("Hello there.", model="omni", voice="Chelsie", format="pcm")
    assert (said.voice, said.model, said.sample_rate) == ("Chelsie", "omni", RATE)
    assert len(said.data) % 2 == 0 and said.duration > 0
    assert len(said.data) / 2 / RATE == pytest.approx(said.duration, abs=1e-3)
    assert said.transcript  # what the model said: its rendition of the text
    # A voice naming the talker model (harken speak --voice omni) means its default speaker.
    assert omni_service.choose_voice("omni").speaker == "Chelsie"
    assert omni_service.choose_voice("Ethan", model="omni").speaker == "Ethan"
    assert not omni_service.choose_voice("alloy", model="omni-text").own  # no talker: Piper
    assert not omni_service.choose_voice("joe", model="omni").own  # a Piper voice asked for by name
    # A model without a talker answering, the talker model's voice (named as the voice) reading it.
    read = omni_service.chat(asked, model="omni-text", max_new_tokens=4, speak=SpeakAnswer("omni", "pcm16"))
    assert (read.speech.model, read.speech.voice, read.speech.sample_rate, read.speech.format) == ("omni", "Chelsie", RATE, "pcm")
    with pytest.raises(InvalidOptionError, match="Chelsie, Ethan") as bad:
        omni_service.chat(asked, model="omni", speak=SpeakAnswer("Nobody"))
    assert bad.value.param == "voice"
    with pytest.raises(InvalidOptionError, match="one speed") as fast:
        omni_service.speak("Hello.", model="omni", speed=2.0)
    assert fast.value.param == "speed"


def test_openai_chat_with_audio_out_returns_the_models_speech(omni_server):
    client = openai.OpenAI(base_url=omni_server + "/v1", api_key="x", max_retries=0)
    reply = client.chat.completions.create(model="omni", messages=ASK, max_tokens=4, modalities=["text", "audio"],
                                           audio={"voice": "Ethan", "format": "wav"})
    audio = reply.choices[0].message.audio
    assert audio.id.startswith("audio_") and audio.expires_at > time.time()
    assert audio.transcript == reply.choices[0].message.content
    data = base64.b64decode(audio.data)
    rate, frames = _wav(data)
    decoded = load_audio(data)
    assert rate == decoded.source_rate == RATE and frames > 0
    assert decoded.duration == pytest.approx(frames / RATE, abs=1e-3)


def test_a_spoken_answer_streams_text_then_pcm16_audio(omni_server):
    client = openai.OpenAI(base_url=omni_server + "/v1", api_key="x", max_retries=0)
    chunks = list(client.chat.completions.create(
        model="omni", messages=ASK, max_tokens=6, temperature=1.0, seed=2, stream=True, modalities=["text", "audio"],
        audio={"voice": "alloy", "format": "pcm16"}, stream_options={"include_usage": True},
    ))
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    text = "".join(d.content or "" for d in deltas)
    audio = [d.audio for d in deltas if d.audio is not None]
    pieces = [base64.b64decode(a.data) for a in audio if a.data]
    first_audio = next(i for i, d in enumerate(deltas) if d.audio is not None)
    assert all(d.content is None for d in deltas[first_audio:])  # the text came first, then the audio
    assert audio[0].transcript == text and len({a.id for a in audio}) == 1 and audio[-1].expires_at > time.time()
    pcm = b"".join(pieces)
    assert pieces and len(pcm) % 2 == 0 and all(len(p) % 2 == 0 for p in pieces)
    assert 0 < len(pcm) / 2 / RATE < 5  # 16 talker codes at most: a fraction of a second
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("stop", "length")
    assert chunks[-1].usage.completion_tokens <= 6


def test_openai_speech_with_the_omni_model_speaks_in_its_voice(omni_server):
    client = openai.OpenAI(base_url=omni_server + "/v1", api_key="x", max_retries=0)
    speech = client.audio.speech.create(model="omni", voice="Ethan", input="Hello there.", response_format="flac")
    decoded = load_audio(speech.content)
    assert decoded.source_rate == RATE and decoded.duration > 0
    with client.audio.speech.with_streaming_response.create(model="omni", voice="chelsie", input="One. Two.",
                                                           response_format="pcm") as response:
        pcm = b"".join(response.iter_bytes())
    assert len(pcm) > 0 and len(pcm) % 2 == 0  # two sentences, each said in turn


def test_models_without_a_talker_keep_the_piper_voice(omni_server):
    client = openai.OpenAI(base_url=omni_server + "/v1", api_key="x", max_retries=0)
    reply = client.chat.completions.create(model="omni-text", messages=ASK, max_tokens=6, modalities=["text", "audio"],
                                           audio={"voice": "alloy", "format": "wav"})
    audio = reply.choices[0].message.audio  # the tiny model's greedy answer holds words Piper can say
    assert audio.transcript == reply.choices[0].message.content
    assert load_audio(base64.b64decode(audio.data)).source_rate == PIPER_RATE
    # Streamed too: the text, then Piper's reading of it in pieces.
    chunks = list(client.chat.completions.create(model="omni-text", messages=ASK, max_tokens=6, stream=True,
                                                 modalities=["text", "audio"], audio={"voice": "joe", "format": "wav"}))
    data = b"".join(base64.b64decode(c.choices[0].delta.audio.data) for c in chunks
                    if c.choices and c.choices[0].delta.audio is not None and c.choices[0].delta.audio.data)
    assert load_audio(data).source_rate == PIPER_RATE and load_audio(data).duration > 0
    # /v1/audio/speech naming a model without a talker: the voice picks Piper, as with tts-1.
    speech = client.audio.speech.create(model="omni-text", voice="alloy", input="Hello there.", response_format="wav")
    assert _wav(speech.content)[0] == PIPER_RATE
    # A Piper voice named with the Omni model: Piper reads it.
    piper = client.audio.speech.create(model="omni", voice="joe", input="Hello there.", response_format="wav")
    assert _wav(piper.content)[0] == PIPER_RATE


def test_a_bad_own_voice_is_a_clear_400_before_anything_runs(omni_server):
    url = omni_server + "/v1"
    for stream in (False, True):
        r = httpx.post(url + "/chat/completions", json={
            "model": "omni", "messages": ASK, "stream": stream, "modalities": ["text", "audio"],
            "audio": {"voice": "Nobody", "format": "wav"}}, timeout=60)
        assert r.status_code == 400 and r.json()["error"]["param"] == "voice", r.text
        assert "Chelsie, Ethan" in r.json()["error"]["message"]
    r = httpx.post(url + "/chat/completions", json={  # the talker starts from the answer's first two tokens
        "model": "omni", "messages": ASK, "max_tokens": 1, "stream": True, "modalities": ["text", "audio"]}, timeout=60)
    assert r.status_code == 400 and r.json()["error"]["param"] == "max_tokens", r.text
    r = httpx.post(url + "/audio/speech", json={"model": "omni", "voice": "nobody", "input": "Hi."}, timeout=60)
    assert r.status_code == 400 and "Chelsie, Ethan" in r.json()["error"]["message"], r.text
    r = httpx.post(url + "/audio/speech", json={"model": "omni", "voice": "Ethan", "input": "Hi.", "speed": 2}, timeout=60)
    assert r.status_code == 400 and r.json()["error"]["param"] == "speed", r.text
