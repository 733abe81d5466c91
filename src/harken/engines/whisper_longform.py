"""Long audio for Whisper: cut at silences, decode the pieces in batches, repair what went wrong.

Whisper's own long-form decoding slides a 30 s window and, on joined or noisy recordings,
jumps over whole utterances. Here every piece is decoded on its own, in batches, with the
encoder window shortened to the piece (CTranslate2 accepts fewer than 3000 frames, and a
10 s window costs a sixth of a 30 s one). Batches run in parallel on the model's CTranslate2
workers. Then two repairs, in one more parallel round:

- a piece whose text loops (a known failure of short windows) is decoded again with the full
  30 s window;
- a piece that yields far fewer words per second than the clip's median was probably
  partly skipped: it is cut again at its shorter pauses and the sub-pieces are decoded; their
  text replaces the piece's when it holds clearly more words.
"""

from __future__ import annotations

import math
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from harken.audio import SAMPLE_RATE
from harken.audio.segment import Cutter, Piece
from harken.engines.base import EngineTranscript, TranscribeOptions
from harken.results import Segment, Word

__all__ = ["SegmentedDecoder"]

MIN_WINDOW_S = 10.0  # shorter encoder windows make tiny models loop
WINDOW_PAD_S = 2.0  # silence after the speech, so the decoder sees the utterance end
WINDOW_STEP_S = 2.0  # window lengths are bucketed so pieces batch together
FULL_WINDOW_S = 30.0
LOW_RATE_RATIO = 0.8
MIN_RATE_CHECK_S = 4.0
REPAIR_GAIN = 1.15
MAX_TOKENS_PER_S = 6  # very fast speech is about 4.5: a looping piece stops early, then is repaired
NO_SPEECH_PROB = 0.6
NO_SPEECH_LOGPROB = -1.0
_PREPEND = "\"'“¿([{-"
_APPEND = "\"'.。,，!！?？:：”)]}、"


@dataclass(frozen=True)
class _Slot:
    """One piece of one clip of the batch."""

    clip: int
    piece: Piece


@dataclass(frozen=True)
class _Decoded:
    slot: _Slot
    tokens: tuple[int, ...]
    text: str
    avg_logprob: float
    no_speech_prob: float
    words: tuple[Word, ...] | None

    @property
    def piece(self) -> Piece:
        return self.slot.piece

    @property
    def word_count(self) -> int:
        return len(self.text.split())

    @property
    def silent(self) -> bool:
        return self.no_speech_prob > NO_SPEECH_PROB and self.avg_logprob < NO_SPEECH_LOGPROB


class SegmentedDecoder:
    def __init__(self, model) -> None:  # a faster_whisper.WhisperModel
        self.model = model

    def transcribe(self, samples: np.ndarray, options: TranscribeOptions) -> EngineTranscript:
        return self.transcribe_many([samples], options)[0]

    def transcribe_many(self, clips: list[np.ndarray], options: TranscribeOptions) -> list[EngineTranscript]:
        """Transcribe several clips with one set of options, their pieces sharing encoder batches.

        Every decision (cuts, repairs) is taken per clip, from that clip's own pieces and rates,
        never from the other clips sharing its batches.
        """
        languages = [self._language(c, options) for c in clips]
        by_language: dict[str, list[int]] = defaultdict(list)
        for i, (language, _) in enumerate(languages):
            by_language[language].append(i)
        cutters = [Cutter(c, workers=self.model.model.num_workers) for c in clips]
        decoded: list[_Decoded] = []
        for language, members in by_language.items():
            run = _Run(self.model, self._prompt(language, options), cutters, options)
            slots = [_Slot(i, p) for i in members for p in cutters[i].pieces()]
            decoded += _repair(run, run.decode(slots))
        out = []
        for i, (language, probability) in enumerate(languages):
            kept = [d for d in decoded if d.slot.clip == i and d.text and not d.silent]
            out.append(EngineTranscript(tuple(_to_segment(k, d) for k, d in enumerate(kept)), language, probability))
        return out

    def _prompt(self, language: str, options: TranscribeOptions) -> tuple[object, list[int]]:
        from faster_whisper.tokenizer import Tokenizer

        tokenizer = Tokenizer(self.model.hf_tokenizer, self.model.model.is_multilingual, task=options.task, language=language)
        previous = tokenizer.encode(" " + options.initial_prompt.strip()) if options.initial_prompt else []
        return tokenizer, self.model.get_prompt(tokenizer, previous, without_timestamps=True)

    def _language(self, samples: np.ndarray, options: TranscribeOptions) -> tuple[str, float]:
        if not self.model.model.is_multilingual:
            return "en", 1.0
        if options.language:
            return options.language, 1.0
        language, probability, _ = self.model.detect_language(samples[: int(FULL_WINDOW_S * SAMPLE_RATE)])
        return language, float(probability)


def _repair(run: _Run, decoded: list[_Decoded]) -> list[_Decoded]:
    """Both repairs in one decode call, so their batches share the workers.

    A looping piece is decoded again with the full 30 s window. A looping piece, or one whose
    word rate is well below its clip's median, is cut again at its shorter pauses and the
    sub-pieces are decoded; their text replaces the piece's when it holds clearly more words.
    """
    looping = [i for i, d in enumerate(decoded) if _loops(d)]
    # A looping piece is also split: its text from the full window is often short too.
    suspects = sorted(set(looping) | set(_slow_pieces(decoded, exclude=set(looping))))
    parts: list[_Slot] = []
    owner: list[int] = []
    for i in suspects:
        slot = decoded[i].slot
        sub = run.cutters[slot.clip].split(slot.piece)
        if len(sub) > 1:  # a piece too short to split would only be decoded the same way again
            parts += [_Slot(slot.clip, p) for p in sub]
            owner += [i] * len(sub)
    if not looping and not parts:
        return decoded
    windows = [FULL_WINDOW_S] * len(looping) + [_window(p.piece.duration) for p in parts]
    again = run.decode([decoded[i].slot for i in looping] + parts, windows)
    decoded = list(decoded)
    for i, d in zip(looping, again):
        decoded[i] = d
    subs = again[len(looping) :]
    # A sub-piece can loop too; dropping it would lose the very speech the split was for.
    relooping = [k for k, d in enumerate(subs) if _loops(d)]
    if relooping:
        for k, d in zip(relooping, run.decode([parts[k] for k in relooping], [FULL_WINDOW_S] * len(relooping))):
            subs[k] = d
    return _replace(decoded, owner, subs)


def _replace(decoded: list[_Decoded], owner: list[int], subs: list[_Decoded]) -> list[_Decoded]:
    """Each piece, or its sub-pieces where they hold clearly more words."""
    by_owner: dict[int, list[_Decoded]] = defaultdict(list)
    for i, d in zip(owner, subs):
        if not _loops(d) and not d.silent:
            by_owner[i].append(d)
    out: list[_Decoded] = []
    for i, d in enumerate(decoded):
        replacement = by_owner.get(i)
        if replacement and sum(r.word_count for r in replacement) > REPAIR_GAIN * d.word_count:
            out += replacement
        else:
            out.append(d)
    return out


def _slow_pieces(decoded: list[_Decoded], exclude: set[int]) -> list[int]:
    """Pieces with a word rate well below their clip's median: probably partly skipped."""
    rates: dict[int, list[float]] = defaultdict(list)
    for i, d in enumerate(decoded):
        if d.text and d.piece.duration >= 2.0 and i not in exclude:
            rates[d.slot.clip].append(d.word_count / d.piece.duration)
    floors = {clip: LOW_RATE_RATIO * float(np.median(r)) for clip, r in rates.items()}
    return [
        i for i, d in enumerate(decoded)
        if i not in exclude
        and d.slot.clip in floors
        and d.piece.duration >= MIN_RATE_CHECK_S
        and d.word_count / d.piece.duration < floors[d.slot.clip]
    ]


class _Run:
    """Batched decoding of pieces of several clips with one tokenizer and prompt."""

    def __init__(self, model, prompt: tuple[object, list[int]], cutters: list[Cutter], options: TranscribeOptions) -> None:
        self.model, self.cutters, self.options = model, cutters, options
        self.tokenizer, self.prompt = prompt

    def decode(self, slots: list[_Slot], windows: list[float] | None = None) -> list[_Decoded]:
        """Decode pieces in batches of equal encoder windows (by default fitted to each piece)."""
        buckets: dict[float, list[int]] = defaultdict(list)
        for i, slot in enumerate(slots):
            buckets[windows[i] if windows else _window(slot.piece.duration)].append(i)
        workers = self.model.model.num_workers
        # Smaller batches when there are too few to keep every worker busy.
        size = max(1, min(self.options.batch_size, math.ceil(len(slots) / workers)))
        # Longest windows first, so parallel workers finish together.
        batches = [
            (window, members[k : k + size])
            for window, members in sorted(buckets.items(), reverse=True)
            for k in range(0, len(members), size)
        ]
        out: list[_Decoded | None] = [None] * len(slots)

        def run(batch: tuple[float, list[int]]) -> None:
            window, members = batch
            for i, d in zip(members, self._decode_batch([slots[i] for i in members], window)):
                out[i] = d

        # CTranslate2 releases the GIL and runs each call on a free worker.
        with ThreadPoolExecutor(max(1, min(workers, len(batches)))) as pool:
            list(pool.map(run, batches))
        return out  # type: ignore[return-value]

    def _decode_batch(self, slots: list[_Slot], window_s: float) -> list[_Decoded]:
        pieces = [s.piece for s in slots]
        n_samples = int(window_s * SAMPLE_RATE)
        n_frames = int(window_s * 100)
        clips = [s.piece.slice(self.cutters[s.clip].samples) for s in slots]
        features = np.stack(
            [self.model.feature_extractor(np.pad(c, (0, n_samples - len(c))))[:, :n_frames] for c in clips]
        )
        encoded = self.model.encode(features)
        opts = self.options
        # A looping piece would otherwise hold its whole batch for up to 224 decoder steps.
        new_tokens = 10 + int(MAX_TOKENS_PER_S * max(p.duration for p in pieces))
        if opts.max_new_tokens is not None:
            new_tokens = min(new_tokens, opts.max_new_tokens)
        results = self.model.model.generate(
            encoded,
            [self.prompt] * len(pieces),
            # As in faster-whisper: a temperature means sampling, which CTranslate2 does without beams.
            beam_size=1 if opts.temperature else opts.beam_size,
            max_length=self._max_length(new_tokens),
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=[-1],
            sampling_temperature=opts.temperature or 1.0,
            sampling_topk=0 if opts.temperature else 1,
        )
        tokens = [[t for t in r.sequences_ids[0] if t < self.tokenizer.eot] for r in results]
        words = self._align(tokens, encoded, n_frames, pieces) if opts.word_timestamps else [None] * len(pieces)
        out = []
        for slot, result, toks, ws in zip(slots, results, tokens, words):
            cum = result.scores[0] * len(result.sequences_ids[0])
            out.append(
                _Decoded(
                    slot=slot,
                    tokens=tuple(toks),
                    text=self.tokenizer.decode(toks).strip(),
                    avg_logprob=float(cum / (len(result.sequences_ids[0]) + 1)),
                    no_speech_prob=float(result.no_speech_prob),
                    words=ws,
                )
            )
        return out

    def _max_length(self, new_tokens: int) -> int:
        # CTranslate2's Whisper generates at most min(max_length / 2, max_length - prompt) tokens.
        return min(self.model.max_length, max(2 * new_tokens, len(self.prompt) + new_tokens))

    def _align(self, tokens: list[list[int]], encoded, n_frames: int, pieces: list[Piece]) -> list[tuple[Word, ...]]:
        from faster_whisper.transcribe import merge_punctuations

        alignments = self.model.find_alignment(self.tokenizer, tokens, encoded, n_frames)
        out = []
        for piece, alignment in zip(pieces, alignments):
            merge_punctuations(alignment, _PREPEND, _APPEND)
            words = []
            for w in alignment:
                if not w["word"]:
                    continue
                start = piece.start + min(float(w["start"]), piece.duration)
                end = piece.start + min(float(w["end"]), piece.duration)
                words.append(Word(round(start, 3), round(max(start, end), 3), w["word"], round(float(w["probability"]), 4)))
            out.append(tuple(words))
        return out


def _window(duration: float) -> float:
    padded = math.ceil((duration + WINDOW_PAD_S) / WINDOW_STEP_S) * WINDOW_STEP_S
    return min(FULL_WINDOW_S, max(MIN_WINDOW_S, padded))


def _loops(d: _Decoded) -> bool:
    from faster_whisper.transcribe import get_compression_ratio

    if not d.text:
        return False
    return get_compression_ratio(d.text) > 1.8 or d.word_count / max(d.piece.duration, 1.0) > 4.5


def _to_segment(index: int, d: _Decoded) -> Segment:
    from faster_whisper.transcribe import get_compression_ratio

    start, end = d.piece.start, d.piece.end
    if d.words:
        start, end = d.words[0].start, d.words[-1].end
    return Segment(
        id=index,
        start=round(start, 3),
        end=round(end, 3),
        text=d.text,
        tokens=d.tokens,
        avg_logprob=d.avg_logprob,
        no_speech_prob=d.no_speech_prob,
        compression_ratio=float(get_compression_ratio(d.text)),
        temperature=0.0,
        words=d.words,
    )
