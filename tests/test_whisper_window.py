"""Windows of a long clip decoded together (engines/whisper_window.py): on the bundled tiny.en
and real recordings joined two at a time, as harken packs pieces of a long clip into a window."""

from __future__ import annotations

import numpy as np
import pytest

from harken.audio import load_audio
from harken.audio.segment import Cutter, Piece, pack
from harken.engines.whisper_longform import FALLBACK_TEMPERATURES, _speech_left
from harken.engines.window_checks import passed_over_speech, speech_inside_a_word, stretched
from harken.engines.whisper_window import Window, WindowText, decode_windows
from tests.wer import wer


@pytest.fixture(scope="module")
def fw(service):
    from faster_whisper import WhisperModel

    path = service.registry.resolve("whisper-tiny.en").source.resolve(service.settings.cache_dir)
    return WhisperModel(str(path), device="cpu", compute_type="int8", num_workers=2, cpu_threads=1)


def joined(data_dir, *names: str) -> np.ndarray:
    return np.concatenate([load_audio(data_dir / n).samples for n in names])


def decoded(model, windows: list[Window]) -> list[WindowText]:
    """Each window's text, with harken's defaults (beam 5, the fallback ladder)."""
    return decode_windows(model, windows, language="en", task="transcribe", beam_size=5,
                          temperatures=FALLBACK_TEMPERATURES, initial_prompt=None, max_new_tokens=None)


def segments(model, windows: list[Window]) -> list:
    """faster-whisper Segments per window."""
    return [w.segments for w in decoded(model, windows)]


def decode(model, windows: list[Window]) -> list[str]:
    return [" ".join(s.text.strip() for s in found) for found in segments(model, windows)]


def nothing_left(_: float) -> None:
    return None


def test_a_window_whisper_ends_early_resumes_without_a_second_encoder_pass(fw, data_dir, references, monkeypatch):
    """tiny.en ends this 22.7 s window before jfk's last words: faster-whisper encodes the audio
    again from its last timestamp, the window decoder resumes on its one encoder pass."""
    names = ("2412-153948-0000.flac", "jfk.flac")
    audio = joined(data_dir, *names)
    reference = " ".join(references[n]["reference"] for n in names)
    passes = []
    encode = fw.encode
    monkeypatch.setattr(fw, "encode", lambda features: passes.append(1) or encode(features))  # the real encoder, counted
    plain = " ".join(s.text.strip() for s in fw.transcribe(audio, beam_size=5, language="en")[0])
    assert len(passes) == 2  # faster-whisper's continuation: what the window decoder saves
    passes.clear()
    [found] = segments(fw, [Window(audio, nothing_left)])
    text = " ".join(s.text.strip() for s in found)
    assert len(passes) == 1
    assert wer([reference], [text]) <= wer([reference], [plain]) and "ask what you can do for your country" in text
    assert all(a.end <= b.start for a, b in zip(found, found[1:]))  # resumed text follows on


def test_speech_after_the_text_ends_is_decoded_from_where_it_starts(fw, data_dir, references):
    """Levelled, tiny.en ends this window after the first speaker (WER 0.56 on the pair): where
    the VAD hears a second or more of speech after the text, decoding resumes there. (A second
    pair, 2412-153948 then fleurs-en-004, also stopped early until pauses were no longer lifted
    with the speech: now it is decoded whole at once.)"""
    names = ("61-70968-0000.flac", "jfk.flac")
    audio = joined(data_dir, *names)
    cutter = Cutter(audio)
    window = Piece(0.0, cutter.duration)
    reference = " ".join(references[n]["reference"] for n in names)
    [stopped] = decode(fw, [Window(cutter.levelled(window), nothing_left)])
    [resumed] = decode(fw, [Window(cutter.levelled(window), _speech_left(cutter, window))])
    assert wer([reference], [stopped]) > 0.25
    assert wer([reference], [resumed]) < 0.05


def test_windows_decoded_together_say_what_each_says_alone(fw, data_dir):
    pairs = [("LJ001-0001.flac", "61-70968-0000.flac"), ("LJ001-0003.flac", "LJ001-0001.flac"),
             ("jfk.flac", "LJ001-0003.flac"), ("fleurs-en-003.ogg", "2412-153948-0000.flac")]
    windows = [Window(joined(data_dir, *pair), nothing_left) for pair in pairs]
    together = decode(fw, windows)
    assert together == [decode(fw, [w])[0] for w in windows]
    assert all(len(text.split()) > 20 for text in together)


def test_a_window_is_sampled_again_on_its_own_encoder_output(fw, data_dir, references, monkeypatch):
    """A window that repeats a phrase is sampled again at faster-whisper's fallback temperatures:
    on the encoder output of its first decoding, not a second pass over the audio."""
    names = ("LJ001-0003.flac", "jfk.flac")
    passes = []
    encode = fw.encode
    monkeypatch.setattr(fw, "encode", lambda features: passes.append(1) or encode(features))  # the real encoder, counted
    [window] = decoded(fw, [Window(joined(data_dir, *names), nothing_left)])
    sampled = " ".join(s.text.strip() for s in window.again(FALLBACK_TEMPERATURES[1:]))
    assert len(passes) == 1
    assert all(s.temperature > 0 for s in window.again(FALLBACK_TEMPERATURES[1:]))
    # Sampled, Whisper may end the window early (a resume needs the VAD): the text it does
    # give is this window's, from its start.
    first = references[names[0]]["reference"]
    assert wer([first], [" ".join(sampled.split()[: len(first.split())])]) < 0.2


def test_speech_a_window_passed_over_lies_inside_one_word(fw, data_dir, references):
    """A window that joins LJ Speech, a quiet FLEURS speaker and LJ Speech again, as harken packs
    that join. When Whisper writes nothing for the quiet speaker (as tiny.en did, its segment
    stretched over the sentence), the text timed word by word on the window's own encoder
    output holds that speech inside one word; the text with the sentence holds none."""
    from faster_whisper.tokenizer import Tokenizer

    names = ("LJ001-0001.flac", "LJ001-0003.flac", "fleurs-en-004.ogg", "LJ001-0001.flac")
    cutter = Cutter(joined(data_dir, *names))
    window = pack(cutter.pieces(max_len=20.0), 28.0, [], cutter.pause)[0]
    quiet = sum(load_audio(data_dir / n).duration for n in names[:2])
    assert window.start < quiet and quiet + 5.0 < window.end  # the quiet sentence (4.3 s) and LJ Speech after it
    [text] = decoded(fw, [Window(cutter.levelled(window), nothing_left)])
    said = [references[n]["reference"] for n in names]
    said[3] = " ".join(said[3].split()[:12])  # as far as the window reaches
    tokenizer = Tokenizer(fw.hf_tokenizer, False, task="transcribe", language="en")

    def inside(sentences: list[str]) -> bool:
        return speech_inside_a_word(cutter, window, text.align(tokenizer.encode(" " + " ".join(sentences))))

    assert inside([said[0], said[1], said[3]])
    assert not inside(said)
    assert speech_inside_a_word(cutter, window, None)  # a model that cannot time words: decoded again apart
    # A text longer than the decoder has positions for (a window looping through resumes) is not timed.
    looped = tokenizer.encode(" " + " ".join(said * 6))
    assert len(looped) > fw.max_length and text.align(looped) == []


def test_speech_passed_over_within_one_recording_is_found_in_a_stretched_segment(fw, data_dir):
    """LJ Speech's "than in the same operations with ugly ones.", JFK's sentence straight after it
    and LJ Speech again, as a dev join packed them into a window (starting at the first). The
    three are about as loud, so no change of source is found. tiny.en writes the first sentence
    alone, its segment stretched over JFK's 11 s: a segment with far more speech than its words
    take. Timed word by word, the speech it passed over starts where the first sentence ends
and holds JFK's. With a
    breath's pause between the recordings, Whisper writes all three and nothing is suspected."""
    names = ("LJ001-0013.flac", "jfk.flac", "LJ001-0001.flac")
    parts = [load_audio(data_dir / n).samples for n in names]
    parts[2] = parts[2][: 4 * 16000]  # as far as the window reached
    cutter = Cutter(np.concatenate(parts))
    window = Piece(0.0, cutter.duration)
    assert not cutter.source_cuts
    [text] = decoded(fw, [Window(cutter.levelled(window), nothing_left)])
    assert "fellow" not in " ".join(s.text for s in text.segments).lower()  # JFK passed over
    assert stretched(cutter, window, text.segments)
    over = passed_over_speech(cutter, window, text.segments, text.align)
    jfk = (len(parts[0]) / 16000, (len(parts[0]) + len(parts[1])) / 16000)
    assert over is not None and jfk[0] - 0.5 <= over.start <= jfk[0] + 0.5 and over.end >= jfk[1]  # after "ones."
    assert passed_over_speech(cutter, window, text.segments, text.align, stretch=False) is None  # (a translation)

    breath = np.zeros(int(0.3 * 16000), dtype=np.float32)
    cutter = Cutter(np.concatenate([parts[0], breath, parts[1], breath, parts[2]]))
    window = Piece(0.0, cutter.duration)
    [text] = decoded(fw, [Window(cutter.levelled(window), nothing_left)])
    assert "fellow" in " ".join(s.text for s in text.segments).lower()
    assert not stretched(cutter, window, text.segments)
    assert passed_over_speech(cutter, window, text.segments, text.align) is None


def test_a_resumed_decoding_never_goes_back_over_the_window(fw, data_dir):
    """Whisper's timestamps only go forward within what it generates, not from the forced
    timestamp a resume starts at. Ending this window (the end of 2412-153948, jfk, 61-70968 and
    the start of LJ001-0001, as a dev join packs them) just short of its end, tiny.en resumed at
    23.0 s and, sampled, went back to 11.0 s and wrote the window's text again (3 of 20 samples
    here, 10 of 20 on the dev join): a segment "23.0 -> 11.0", then the rest over again."""
    audio = joined(data_dir, "2412-153948-0000.flac", "jfk.flac", "61-70968-0000.flac", "LJ001-0001.flac")
    cutter = Cutter(audio)
    pieces = cutter.pieces(max_len=20.0)
    window = Piece(pieces[1].start, pieces[3].end)
    [text] = decoded(fw, [Window(cutter.levelled(window), _speech_left(cutter, window))])
    for found in [text.segments] + [text.again(FALLBACK_TEMPERATURES[1:]) for _ in range(20)]:
        assert all(s.start <= s.end for s in found), [(s.start, s.end, s.text) for s in found]
        assert all(s.start >= s.seek / 100 - 0.02 for s in found), [(s.seek, s.start, s.text) for s in found]
        assert all(a.start <= b.start for a, b in zip(found, found[1:])), [(s.start, s.text) for s in found]
