"""Speech out: Piper voices through the Service, the CLI and /v1/audio/speech."""

from __future__ import annotations

import base64
import subprocess
import sys
import time

import httpx
import openai
import pytest

from harken import Settings, load_audio
from harken.errors import InvalidOptionError
from tests.live_server import live_server
from tests.wer import wer

SENTENCES = [
    "The weather will be sunny tomorrow with a light breeze from the west.",
    "Please remember to bring your notebook to the meeting on Friday.",
    "Local models keep your recordings on your own machine.",
]
LONG = " ".join(SENTENCES * 4)


def test_spoken_sentences_transcribe_back(service):
    spoken = [service.speak(s, format="wav") for s in SENTENCES]
    heard = [service.transcribe(s.data, use_cache=False).text for s in spoken]
    assert wer(SENTENCES, heard) < 0.1
    assert all(s.voice == "piper-joe" and s.sample_rate == 22050 for s in spoken)


def test_a_long_unpunctuated_sentence_is_spoken_in_bounded_pieces(service):
    from harken.engines.piper import MAX_PIECE_CHARS, pieces

    # Words that do not repeat: a sentence said over and over is a test of Whisper's loop
    # checks (its fallback samples at random on real repeats), not of how Piper cuts text.
    words = (
        "the weather will be sunny tomorrow with a light breeze from the west and in the afternoon "
        "a few clouds may gather over the hills to the north but the rain should hold off until the "
        "evening when a band of showers moves in from the coast so anyone planning a walk or a bike "
        "ride should set out early and bring a warm jacket because the temperature will drop quickly "
        "after sunset and the wind will pick up near the water where small boats are advised to stay "
        "in the harbour until the morning on saturday the showers will clear away to the east leaving "
        "a bright and dry day that is perfect for the market in the town square where local farmers "
        "will sell fresh bread cheese apples and honey while children play in the park next to the old "
        "library and on sunday the high pressure will bring another calm day with plenty of sunshine "
        "although a little frost is likely early in the morning in the valleys so drivers should take "
        "care on the roads before the ice melts"
    )
    cut = pieces(words)
    assert " ".join(cut) == words and all(len(p) <= MAX_PIECE_CHARS for p in cut) and len(cut) >= 5
    assert all(not p.startswith(" ") and " " not in p[-1:] for p in cut)  # cut between words
    assert pieces("One, two, three. Four!") == ["One, two, three.", "Four!"]
    spoken = service.speak(words, format="wav")  # one 957-character sentence, no punctuation
    heard = service.transcribe(spoken.data, use_cache=False).text
    assert wer([words], [heard]) < 0.2 and 30 < spoken.duration < 90


def test_speech_that_really_repeats_itself_is_not_looped(service):
    """One sentence read twelve times (42 s): on a packed window tiny.en loops and writes it 15+
    times (270-285 words without the too-fast repair). Which words come back varies from run
    to run, since faster-whisper's fallback samples on text this repetitive: 98-180 of the
    180 words said, measured over 19 runs. So the test checks the loop alone: never a tenth
    more words than were said (a loop adds half again), and no segment past the audio's end."""
    sentence = "the weather will be sunny tomorrow with a light breeze from the west and then"
    said = 12 * len(sentence.split())
    spoken = service.speak(" ".join([sentence] * 12), format="wav")
    heard = service.transcribe(spoken.data, use_cache=False)
    assert len(heard.text.split()) <= 1.1 * said
    assert max(s.end for s in heard.segments) <= spoken.duration + 0.5


@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac", "flac", "wav"])
def test_every_format_decodes_at_its_rate_and_length(service, fmt):
    speech = service.speak(SENTENCES[0], format=fmt)
    audio = load_audio(speech.data)
    assert audio.source_rate == speech.sample_rate == (48000 if fmt == "opus" else 22050)
    assert audio.duration == pytest.approx(speech.duration, abs=0.12)  # codec priming and padding only
    assert speech.duration > 2.0


def test_pcm_is_raw_24k_16bit(service):
    speech = service.speak(SENTENCES[1], format="pcm")
    assert speech.sample_rate == 24000 and len(speech.data) % 2 == 0
    assert len(speech.data) / 2 / 24000 == pytest.approx(speech.duration, abs=0.01)


def test_speed_two_roughly_halves_the_duration(service):
    normal = sum(service.speak(SENTENCES[0]).duration for _ in range(3))
    fast = sum(service.speak(SENTENCES[0], speed=2.0).duration for _ in range(3))
    assert 0.4 < fast / normal < 0.75


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [({"text": ""}, "input"), ({"text": "x" * 4097}, "input"), ({"voice": "nobody"}, "voice"),
     ({"speed": 5.0}, "speed"), ({"format": "ogg-vorbis"}, "response_format"), ({"voice": "tiny.en"}, "voice")],
)
def test_bad_speech_requests(service, kwargs, param):
    args = {"text": "hello", **kwargs}
    with pytest.raises(InvalidOptionError) as caught:
        service.speak(args.pop("text"), **args)
    assert isinstance(caught.value, InvalidOptionError) and caught.value.param == param


@pytest.fixture(scope="module")
def speech_server(cache_dir, tmp_path_factory):
    from tests.tiny_alm import build_qwen2_audio

    tiny = build_qwen2_audio(tmp_path_factory.mktemp("tiny-speak") / "qwen2-audio")
    settings = Settings.load(cache_dir=cache_dir, models={"tiny": {"engine": "alm", "source": str(tiny)}})
    with live_server(settings) as url:
        yield url


def test_openai_speech_and_streaming(speech_server, service):
    client = openai.OpenAI(base_url=speech_server + "/v1", api_key="x", max_retries=0)
    speech = client.audio.speech.create(model="tts-1", voice="alloy", input=SENTENCES[2], response_format="flac")
    assert "own machine" in service.transcribe(speech.content, use_cache=False).text.lower()
    start = time.perf_counter()
    arrivals = []
    with client.audio.speech.with_streaming_response.create(model="tts-1", voice="joe", input=LONG,
                                                           response_format="mp3") as response:
        data = b""
        for chunk in response.iter_bytes():
            arrivals.append(time.perf_counter() - start)
            data += chunk
    assert len(arrivals) >= 3 and arrivals[0] < 0.5 * arrivals[-1]  # audio before synthesis ended
    assert load_audio(data).duration > 20


def test_speech_errors_over_http(speech_server):
    url = speech_server + "/v1/audio/speech"
    for body in ({"input": ""}, {"input": "x" * 5000}, {"input": "hi", "speed": 9},
                 {"input": "hi", "response_format": "ogg-vorbis"}, {"input": "hi", "voice": "tiny.en"},
                 {"input": "hi", "voice": "nobody"}):
        r = httpx.post(url, json={"model": "tts-1", **body})
        assert r.status_code == 400 and set(r.json()["error"]) == {"message", "type", "param", "code"}, r.text


def test_spoken_chat_answer(speech_server, service):
    client = openai.OpenAI(base_url=speech_server + "/v1", api_key="x", max_retries=0)
    reply = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Say something."}],
                                           max_tokens=6, modalities=["text", "audio"], audio={"voice": "alloy", "format": "wav"})
    audio = reply.choices[0].message.audio
    assert audio.transcript == reply.choices[0].message.content and audio.expires_at > time.time()
    assert load_audio(base64.b64decode(audio.data)).source_rate == 22050


def test_cli_speak(tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "harken", *args], capture_output=True, text=True, timeout=300)

    out = run("speak", SENTENCES[0], "--output", str(tmp_path / "a.opus"))
    assert out.returncode == 0 and load_audio(tmp_path / "a.opus").source_rate == 48000
    piped = subprocess.run([sys.executable, "-m", "harken", "speak", "-", "-o", str(tmp_path / "b.wav"), "--speed", "1.5"],
                           input=SENTENCES[1], capture_output=True, text=True, timeout=300)
    assert piped.returncode == 0 and load_audio(tmp_path / "b.wav").duration > 1.5
    for bad in (["", "-o", str(tmp_path / "c.wav")], ["hi", "-o", str(tmp_path / "c.wav"), "--speed", "9"],
                ["hi", "-o", str(tmp_path / "c.xyz")], ["hi", "-o", str(tmp_path / "c.wav"), "--voice", "nobody"]):
        out = run("speak", *bad)
        assert out.returncode != 0 and out.stderr.startswith("harken: error:") and out.stderr.count("\n") == 1
    assert not (tmp_path / "c.wav").exists() and not (tmp_path / "c.xyz").exists()
