"""Windows of a long clip decoded as faster-whisper decodes a window, several at a time.

For each window harken cuts from a long clip (at most 30 s, starting and ending at a pause)
this takes faster-whisper's own steps: its prompt, beam search with its temperature fallback,
its no-speech gate, and its split of the text at Whisper's timestamps. Two things differ, both
for speed:

- the beam search at temperature 0 runs for several windows in one CTranslate2 call: each
  decoding step then reads the output layer, most of a small Whisper's weights, once for all
  of them (tiny.en on a 2-core CPU: about a quarter less decoder time at 4 windows a call);
- where Whisper ends a window with speech still to come in it, faster-whisper encodes the
  audio again from its last timestamp. Here decoding resumes on the window's own encoder
  output instead, from a forced timestamp at that point: the prompt faster-whisper would give,
  and no second encoder pass. It also resumes where the VAD hears a second or more of speech
  after the last segment (Whisper, done with one speaker, sometimes ends before the next).

Each window's encoder output is kept while its text is judged: a window that looped is sampled
again on it, and any text can be timed word by word on it (faster-whisper's alignment).

faster-whisper's private steps are used directly (pinned to the 1.2 series in pyproject.toml).
A window that wants word timestamps, or faster-whisper's VAD, takes faster-whisper's own path.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from functools import cache
from types import SimpleNamespace

import numpy as np

__all__ = ["Window", "WindowText", "clip_words", "decode_windows", "timed_words"]

log = logging.getLogger("harken.engines")

# A bound on the decoder's work per window, never reached in practice (one resume is usual):
# faster-whisper's own loop has none, but it moves on by a new encoder window each time.
MAX_RESUMES = 3
MIN_PROGRESS_S = 1.0  # a resume that would not move on by this much would decode the same again


@dataclass(frozen=True)
class Window:
    samples: np.ndarray  # at most 30 s at 16 kHz
    # Given where the text so far ends (s from the window's start): where speech that the VAD
    # hears and the text does not reach starts after it, if there is enough to decode.
    speech_left: Callable[[float], float | None]


@dataclass(frozen=True)
class WindowText:
    segments: list  # faster-whisper Segments, times from the window's start
    # The window decoded again from scratch at these temperatures, on its kept encoder output
    # (faster-whisper would encode the audio again): how a decoding that looped is sampled.
    again: Callable[[Sequence[float]], list]
    # Where each word of a text (its tokens) lies in the window, as (start, end) s from the
    # window's start, by Whisper's cross-attention on the kept encoder output: faster-whisper's
    # raw find_alignment, before its word timestamps merge punctuation and cap long words. Each
    # word lasts until the next begins, so speech the text passed over lies inside some word.
    # None where the model cannot time words (a conversion without alignment heads).
    align: Callable[[Sequence[int]], list[tuple[float, float]] | None]
    # faster-whisper's word timestamps for segments of this window, aligned together: its Words
    # per segment, None where the model cannot time words or the text is too long to align.
    words: Callable[[Sequence], list[list] | None]


def decode_windows(model, windows: Sequence[Window], *, language: str, task: str, beam_size: int,
                   temperatures: Sequence[float], initial_prompt: str | None,
                   max_new_tokens: int | None) -> list[WindowText]:
    """Each window's text, the windows decoded together."""
    from faster_whisper.audio import pad_or_trim
    from faster_whisper.tokenizer import Tokenizer

    tokenizer = Tokenizer(model.hf_tokenizer, model.model.is_multilingual, task=task, language=language)
    options = _options(model, tokenizer, beam_size, temperatures, initial_prompt, max_new_tokens)
    frames = []
    encoded = []
    for w in windows:
        features = model.feature_extractor(w.samples)
        frames.append(features.shape[-1] - 1)
        encoded.append(model.encode(pad_or_trim(features[:, : frames[-1]])))
    prompts = [_Prompt(model, tokenizer, options) for _ in windows]
    firsts = _first_decodings(model, tokenizer, options, encoded, [p.tokens(0) for p in prompts])

    def again(w: Window, n: int, enc) -> Callable[[Sequence[float]], list]:
        def decode(temperatures: Sequence[float]) -> list:
            sampled = replace(options, temperatures=list(temperatures))
            prompt = _Prompt(model, tokenizer, sampled)
            first = model.generate_with_fallback(enc, prompt.tokens(0), tokenizer, sampled)
            return _window(model, tokenizer, sampled, w, n, enc, prompt, first)

        return decode

    out = []
    for w, n, enc, prompt, first in zip(windows, frames, encoded, prompts, firsts):
        aligner = _Aligner(model, tokenizer, enc, n)
        out.append(WindowText(_window(model, tokenizer, options, w, n, enc, prompt, first), again(w, n, enc),
                              aligner.times, aligner.words))
    return out


class _Aligner:
    """Whisper's cross-attention alignment of a window's text on its kept encoder output."""

    def __init__(self, model, tokenizer, encoded, frames: int) -> None:
        self.model, self.tokenizer, self.encoded, self.frames = model, tokenizer, encoded, frames

    def _text(self, tokens: Sequence[int]) -> list[int] | None:
        """A text's tokens without timestamps (as faster-whisper aligns them), or None where there
        is nothing to align or more than the decoder has positions for (max_length tokens, the
        prompt and end included: a window's text, with resumes, can hold more only by looping)."""
        text = [t for t in tokens if t < self.tokenizer.eot]
        return text if text and len(self.tokenizer.sot_sequence) + len(text) + 2 <= self.model.max_length else None

    def times(self, tokens: Sequence[int]) -> list[tuple[float, float]] | None:
        """Where each word of a text lies: faster-whisper's raw find_alignment (see WindowText.align)."""
        text = self._text(tokens)
        if text is None:
            return []
        try:
            words = self.model.find_alignment(self.tokenizer, [text], self.encoded, self.frames)[0]
        except RuntimeError as error:  # CTranslate2: no alignment heads in this conversion
            _cannot_align(str(error))
            return None
        return [(float(w["start"]), float(w["end"])) for w in words]

    def words(self, segments: Sequence) -> list[list] | None:
        """faster-whisper's word timestamps for segments decoded from this window (times from its
        start), aligned together: its add_word_timestamps, whose capping of a word that runs
        over a pause matters here (aligned raw, the first word after 16 s of a quiet meeting
        room lasted the 16 s)."""
        from faster_whisper.transcribe import Word

        if self._text([t for s in segments for t in s.tokens]) is None:
            return None
        parts = [{"seek": 0, "start": s.start, "end": s.end, "tokens": list(s.tokens)} for s in segments]
        defaults = _defaults()
        try:
            self.model.add_word_timestamps([parts], self.tokenizer, self.encoded, self.frames,
                                           defaults["prepend_punctuations"], defaults["append_punctuations"], 0.0)
        except RuntimeError as error:  # CTranslate2: no alignment heads in this conversion
            _cannot_align(str(error))
            return None
        return [[Word(**w) for w in p.get("words", [])] for p in parts]


class _Prompt:
    """What faster-whisper puts before a window's decoding: the text so far (until a sampled
    decoding resets it), then the start-of-transcript tokens."""

    def __init__(self, model, tokenizer, options) -> None:
        self.model, self.tokenizer, self.options = model, tokenizer, options
        self.previous: list[int] = []
        if options.initial_prompt:
            self.previous = tokenizer.encode(" " + options.initial_prompt.strip())

    def tokens(self, seek: int) -> list[int]:
        prompt = self.model.get_prompt(self.tokenizer, self.previous, without_timestamps=False)
        return prompt + [self.forced(seek)] if seek else prompt

    def forced(self, seek: int) -> int:
        return self.tokenizer.timestamp_begin + seek // self.model.input_stride

    def said(self, tokens: list[int], temperature: float) -> None:
        self.previous.extend(tokens)
        if temperature > self.options.prompt_reset_on_temperature:
            self.previous = []


def _first_decodings(model, tokenizer, options, encoded, prompts):
    """Each window's first decoding: one beam search at temperature 0 for all of them, then
    faster-whisper's whole ladder for any window that fails its checks there."""
    alone = len(encoded) == 1 or len({tuple(p) for p in prompts}) > 1 or options.temperatures[0] != 0
    if alone or options.max_new_tokens is not None:  # (faster-whisper checks max_new_tokens against the prompt)
        return [model.generate_with_fallback(e, p, tokenizer, options) for e, p in zip(encoded, prompts)]
    import ctranslate2

    stacked = np.concatenate([np.asarray(e) for e in encoded])  # kept alive: the view does not copy it
    batch = ctranslate2.StorageView.from_array(stacked)
    results = model.model.generate(
        batch, prompts, beam_size=options.beam_size, patience=options.patience, **generate_kwargs(model, options),
    )
    out = []
    for e, p, result in zip(encoded, prompts, results):
        decoded = scored(tokenizer, options, result)
        if needs_fallback(options, result, decoded[1], decoded[3]):
            decoded = model.generate_with_fallback(e, p, tokenizer, options)
        out.append(decoded)
    return out


def _window(model, tokenizer, options, w: Window, frames: int, encoded, prompt: _Prompt, decoded):
    """faster-whisper's loop over one window, resuming on the same encoder output."""
    from faster_whisper.transcribe import Segment

    duration = frames * model.feature_extractor.time_per_frame
    segments, seek = [], 0
    for resume in range(MAX_RESUMES + 1):
        if resume:
            decoded = model.generate_with_fallback(encoded, prompt.tokens(seek), tokenizer, options)
        result, avg_logprob, temperature, compression_ratio = decoded
        if _silent(options, result, avg_logprob):
            break
        tokens = ([prompt.forced(seek)] if seek else []) + list(result.sequences_ids[0])
        split, next_seek, finished = model._split_segments_by_timestamps(
            tokenizer=tokenizer, tokens=tokens, time_offset=0.0, segment_size=frames, segment_duration=duration, seek=0,
        )
        said, went_back = [], False
        resumed_at = seek * model.feature_extractor.time_per_frame
        for s in split:
            text = tokenizer.decode(s["tokens"])
            if s["start"] == s["end"] or not text.strip():
                continue
            # Whisper's rule that timestamps only go forward binds the tokens it generates, not the
            # forced one a resume starts from: a resume can go back to the window's start and
            # write its text again ("23.0 -> 11.0 And so, my fellow Americans ..."). Nothing from
            # there on is new.
            if seek and (s["start"] < resumed_at - model.time_precision or s["end"] < s["start"]):
                went_back = True
                break
            said.extend(s["tokens"])
            segments.append(Segment(
                id=len(segments) + 1, seek=seek, start=s["start"], end=s["end"], text=text, tokens=s["tokens"],
                temperature=temperature, avg_logprob=avg_logprob, compression_ratio=compression_ratio,
                no_speech_prob=result.no_speech_prob, words=None,
            ))
        prompt.said(said, temperature)
        if went_back:
            break
        if finished or next_seek >= frames:  # Whisper says the window is done: unless the VAD hears more
            left = w.speech_left(max([s.end for s in segments], default=0.0))
            next_seek = frames if left is None else round(left * model.frames_per_second)
        if next_seek >= frames or next_seek < seek + MIN_PROGRESS_S * model.frames_per_second:
            break
        seek = next_seek
    return segments


def timed_words(model, samples: np.ndarray, tokens: Sequence[int], *, language: str, task: str) -> list:
    """faster-whisper's word timestamps (its alignment, punctuation merged, long words capped)
    for `tokens` decoded from the first window of `samples`, in s from its start; [] where the
    model cannot time words."""
    seconds = min(len(samples) / model.feature_extractor.sampling_rate, model.feature_extractor.chunk_length)
    whole = SimpleNamespace(start=0.0, end=seconds, tokens=list(tokens))
    return (clip_words(model, samples, [whole], language=language, task=task) or [[]])[0]


def clip_words(model, samples: np.ndarray, segments: Sequence, *, language: str, task: str) -> list[list] | None:
    """Words for segments decoded together from the first window of `samples` (_Aligner.words),
    the window encoded through `model.encode`, so an encoder output kept from its decoding
    serves."""
    from faster_whisper.audio import pad_or_trim
    from faster_whisper.tokenizer import Tokenizer

    tokenizer = Tokenizer(model.hf_tokenizer, model.model.is_multilingual, task=task, language=language)
    features = model.feature_extractor(samples)
    frames = min(features.shape[-1] - 1, model.feature_extractor.nb_max_frames)
    return _Aligner(model, tokenizer, model.encode(pad_or_trim(features[:, :frames])), frames).words(segments)


@cache
def _cannot_align(reason: str) -> None:
    """Said once a process (per reason): a model that cannot time words."""
    log.warning("this Whisper model cannot time words (%s): windows joining recordings are decoded again apart, "
                "and clips of one window are decoded with timestamps", reason)


def scored(tokenizer, options, result, temperature: float = 0.0):
    """faster-whisper's figures for one decoding: (result, avg_logprob, temperature, compression_ratio)."""
    from faster_whisper.transcribe import get_compression_ratio

    tokens = result.sequences_ids[0]
    cumulative = result.scores[0] * (len(tokens) ** options.length_penalty)
    return result, cumulative / (len(tokens) + 1), temperature, get_compression_ratio(tokenizer.decode(tokens).strip())


def too_repetitive(options, compression_ratio: float) -> bool:
    """faster-whisper's rule for a decoding that looped: its text compresses too well."""
    return options.compression_ratio_threshold is not None and compression_ratio > options.compression_ratio_threshold


def needs_fallback(options, result, avg_logprob: float, compression_ratio: float) -> bool:
    """faster-whisper's rule: too repetitive or too unlikely, unless it is silence."""
    unlikely = options.log_prob_threshold is not None and avg_logprob < options.log_prob_threshold
    silence = options.no_speech_threshold is not None and result.no_speech_prob > options.no_speech_threshold and unlikely
    return (too_repetitive(options, compression_ratio) or unlikely) and not silence


def _silent(options, result, avg_logprob: float) -> bool:
    """faster-whisper's no-speech gate: Whisper thinks there is no speech and its text is unlikely."""
    return (
        options.no_speech_threshold is not None
        and result.no_speech_prob > options.no_speech_threshold
        and not (options.log_prob_threshold is not None and avg_logprob > options.log_prob_threshold)
    )


def generate_kwargs(model, options) -> dict:
    """The arguments faster-whisper gives CTranslate2's generate, apart from the search itself."""
    return dict(
        length_penalty=options.length_penalty, repetition_penalty=options.repetition_penalty,
        no_repeat_ngram_size=options.no_repeat_ngram_size, max_length=model.max_length, return_scores=True,
        return_no_speech_prob=True, suppress_blank=options.suppress_blank, suppress_tokens=options.suppress_tokens,
        max_initial_timestamp_index=int(round(options.max_initial_timestamp / model.time_precision)),
    )


def _options(model, tokenizer, beam_size: int, temperatures: Sequence[float], initial_prompt: str | None,
             max_new_tokens: int | None):
    """faster-whisper's TranscriptionOptions, with its own defaults for everything harken does not set."""
    from faster_whisper.transcribe import TranscriptionOptions, get_suppressed_tokens

    defaults = _defaults()
    values = {f.name: defaults[f.name] for f in fields(TranscriptionOptions) if f.name in defaults}
    values.update(
        beam_size=beam_size, temperatures=list(temperatures), initial_prompt=initial_prompt, prefix=None,
        max_new_tokens=max_new_tokens, without_timestamps=False, word_timestamps=False, multilingual=False,
        hotwords=None, clip_timestamps=[0.0], hallucination_silence_threshold=None,
        suppress_tokens=get_suppressed_tokens(tokenizer, defaults["suppress_tokens"]),
    )
    return TranscriptionOptions(**values)


@cache
def _defaults() -> dict:
    """faster-whisper's defaults for WhisperModel.transcribe's arguments."""
    from faster_whisper.transcribe import WhisperModel

    return {k: p.default for k, p in inspect.signature(WhisperModel.transcribe).parameters.items()}
