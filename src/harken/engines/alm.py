"""Audio-language models on Hugging Face transformers: Qwen2-Audio, Qwen2.5-Omni and Qwen3-Omni
(thinkers), Audio Flamingo 3, Voxtral; a full Qwen2.5-Omni checkpoint (talker, token2wav and
spk_dict.pt) also answers in its own voice.

The model class comes from the checkpoint's config; prompts go through the processor's own
chat template and audio through its feature extractor, so the engine never branches on a
model name beyond the class table. JSON output is constrained with xgrammar: the result parses
and validates against the schema even for a random-weight model.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from harken.engines.alm_processor import load_processor
from harken.engines.base import Capability
from harken.engines.chat import AudioPart, ChatMessage, ChatOptions, EngineReply, OnText, TextPart, Waveform
from harken.errors import (
    CapabilityError, InvalidOptionError, MissingExtraError, ModelLoadError, PayloadTooLargeError, UnsupportedModelError,
    install_command, require,
)

__all__ = ["AudioLanguageEngine", "MODEL_CLASSES", "TALKER_CLASSES", "has_talker", "OMNI_SPEECH_PROMPT", "SAY_PROMPT"]

# config.model_type -> transformers class. Omni checkpoints load their thinker: text out.
MODEL_CLASSES = {
    "qwen2_audio": "Qwen2AudioForConditionalGeneration",
    "qwen2_5_omni": "Qwen2_5OmniThinkerForConditionalGeneration",
    "qwen2_5_omni_thinker": "Qwen2_5OmniThinkerForConditionalGeneration",
    "qwen3_omni_moe": "Qwen3OmniMoeThinkerForConditionalGeneration",
    "qwen3_omni_moe_thinker": "Qwen3OmniMoeThinkerForConditionalGeneration",
    "audioflamingo3": "AudioFlamingo3ForConditionalGeneration",
    "voxtral": "VoxtralForConditionalGeneration",
}

# config.model_type -> the class that loads thinker, talker and token2wav, for a checkpoint that has them.
TALKER_CLASSES = {"qwen2_5_omni": "Qwen2_5OmniForConditionalGeneration"}

# Qwen2.5-Omni speaks only under its documented system prompt; harken puts it in when a spoken
# answer is asked for and the conversation has no system message of its own.
OMNI_SPEECH_PROMPT = (
    "You are Qwen, a virtual human developed by the Qwen Team, Alibaba Group, capable of perceiving auditory and "
    "visual inputs, as well as generating text and speech."
)
# How /v1/audio/speech asks a talker model to read a text: its rendition, not a guaranteed verbatim TTS.
SAY_PROMPT = "Say exactly this, nothing else: "
# Qwen2.5-Omni's vocoder writes 24 kHz; a token2wav config that states its rate wins.
DEFAULT_SPEECH_RATE = 24_000

_GRAMMARS_KEPT = 32


def has_talker(path: Path, config: Any) -> bool:
    """A full Omni checkpoint that can speak: a talker class, audio output enabled, speakers on disk."""
    return (config.model_type in TALKER_CLASSES and bool(getattr(config, "enable_audio_output", False))
            and (path / "spk_dict.pt").is_file())


class AudioLanguageEngine:
    capabilities = Capability.CHAT
    batches = False

    def __init__(self, path: Path, *, device: str = "auto", options: dict[str, Any] | None = None) -> None:
        options = options or {}
        try:
            import torch
        except ImportError:
            # torch is left out of the alm extra: the right build (CPU or CUDA) depends on the machine.
            raise MissingExtraError(
                "audio-language models need PyTorch (torch is not installed): install the torch build for this "
                f"machine (CPU or CUDA), then the alm extra: {install_command('alm')}"
            ) from None
        transformers = require("transformers", "alm", "loading an audio-language model")
        from transformers import AutoConfig
        from transformers.utils import logging as hf_logging
        hf_logging.disable_progress_bar()  # a loading bar on a server's stderr is noise
        hf_logging.set_verbosity_error()
        try:
            config = AutoConfig.from_pretrained(path)
        except (OSError, ValueError) as exc:
            raise UnsupportedModelError(f"{path.name}: not a transformers checkpoint ({_first_line(exc)})") from None
        class_name = MODEL_CLASSES.get(config.model_type)
        if class_name is None:
            known = ", ".join(sorted(MODEL_CLASSES))
            raise UnsupportedModelError(f"{path.name}: model type {config.model_type!r} is not supported (supported: {known})")
        # A full Omni checkpoint loads whole (talker included) unless its options say audio_output = false.
        talks = bool(options.get("audio_output", True)) and has_talker(path, config)
        if talks:
            class_name = TALKER_CLASSES[config.model_type]
        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        dtype = torch.bfloat16 if self.device.startswith("cuda") else torch.float32
        try:
            self.processor = load_processor(path)
            self.model = getattr(transformers, class_name).from_pretrained(path, dtype=dtype, attn_implementation="sdpa")
        except (OSError, ValueError, ImportError, RuntimeError) as exc:
            raise ModelLoadError(f"{path.name}: cannot load {class_name}: {_first_line(exc)}") from None
        self.model.to(self.device).eval()
        self.model_type = config.model_type
        # The text model: the whole model, or the thinker of a full Omni model.
        self.thinker = self.model.thinker if talks else self.model
        self.talker = self.model.talker if talks else None
        self.voices: tuple[str, ...] = tuple(self.model.speaker_map) if talks else ()
        self.default_voice = ("Chelsie" if "Chelsie" in self.voices else self.voices[0]) if self.voices else None
        self.speech_rate = _speech_rate(config) if talks else None
        self.speech_system_prompt = OMNI_SPEECH_PROMPT if talks else None
        self.talker_max_new_tokens = int(options.get("talker_max_new_tokens", 4096))
        # The thinker of a full model keeps no stop tokens of its own: the checkpoint's (ChatML) ones.
        self._eos = sorted(_eos_ids(self.model.generation_config) or _eos_ids(self.thinker.generation_config))
        self._pad = self.model.generation_config.pad_token_id
        self.window_s = float(options.get("window_s", 30.0))
        self.max_audio_parts = int(options.get("max_audio_parts", 8))
        budget = options.get("memory_budget_mb")
        self.memory_budget = float(budget) * 1024 * 1024 if budget is not None else None
        # A Captioner describes audio without being asked; other models get a captioning prompt.
        self.prompt_free_caption = bool(options.get("captioner", "captioner" in path.name.lower()))
        self._grammars: OrderedDict[str, Any] = OrderedDict()
        self._tokenizer_info = None
        self._lock = threading.Lock()  # one generate at a time per model

    def warmup(self) -> None:
        self.chat([ChatMessage("user", ())], ChatOptions(max_new_tokens=1))

    def close(self) -> None:
        self.model = self.thinker = self.talker = None

    def chat(
        self, messages: list[ChatMessage], options: ChatOptions, on_text: OnText | None = None, *,
        voice: str | None = None,
    ) -> EngineReply:
        """One answer; with `voice` (one of `voices`) also spoken by the talker, in `speech`."""
        import torch

        audio_count = sum(len(m.audio) for m in messages)
        if audio_count > self.max_audio_parts:
            raise InvalidOptionError(f"at most {self.max_audio_parts} audio parts per request, got {audio_count}", param="messages")
        if voice is not None:
            self.check_speech(voice, options)
            if not any(m.role == "system" for m in messages):
                messages = [ChatMessage("system", (TextPart(self.speech_system_prompt),)), *messages]
        inputs = self._inputs(messages)
        prompt_len = int(inputs["input_ids"].shape[1])
        self._check_memory(prompt_len + options.max_new_tokens)
        kwargs: dict[str, Any] = dict(max_new_tokens=options.max_new_tokens, do_sample=options.temperature > 0)
        if options.temperature > 0:
            kwargs.update(temperature=options.temperature, top_p=options.top_p, top_k=options.top_k or None)
        if options.json_schema is not None:
            kwargs["logits_processor"] = [self._json_processor(options.json_schema)]
        if on_text is not None:
            kwargs["streamer"] = _DeltaStreamer(self.processor.tokenizer, on_text)
        if self.talker is not None:
            # The full model hands unprefixed options to all three parts: these are the thinker's.
            kwargs = {f"thinker_{k}": v for k, v in kwargs.items()}
            kwargs.update(thinker_eos_token_id=self._eos, thinker_pad_token_id=self._pad)
            if voice is None:
                kwargs["generation_mode"] = "text"
            else:
                talker = self.talker.config
                # transformers' talker needs two thinker tokens and token2wav one speech code: an answer
                # or a talker that stopped at once would fail there.
                kwargs.update(speaker=voice, thinker_min_new_tokens=2, talker_min_new_tokens=1,
                              talker_max_new_tokens=self.talker_max_new_tokens,
                              talker_eos_token_id=[talker.tts_codec_pad_token_id, talker.tts_codec_end_token_id])
        with self._lock, torch.inference_mode():
            if options.seed is not None:
                torch.manual_seed(options.seed)
            out = self.model.generate(**inputs, **kwargs)
        speech = None
        if voice is not None:
            out, wav = out
            speech = Waveform(wav.reshape(-1).float().cpu().numpy().astype("float32", copy=False), self.speech_rate)
        sequence = out[0] if not hasattr(out, "sequences") else out.sequences[0]
        generated = sequence[prompt_len:].tolist()
        eos = set(self._eos)
        finished = bool(generated) and generated[-1] in eos
        text = self.processor.tokenizer.decode([t for t in generated if t not in eos], skip_special_tokens=True)
        return EngineReply(text, "stop" if finished or len(generated) < options.max_new_tokens else "length",
                           prompt_len, len(generated), speech)

    def say(self, text: str, voice: str, *, seed: int | None = None) -> EngineReply:
        """`text` read by the talker in `voice`: the model is asked to say it and nothing else, so
        the speech is its rendition (usually the text; a weak or random model says what it says).
        Greedy, with room for the text's tokens and a quarter more."""
        needed = len(self.processor.tokenizer(text)["input_ids"]) * 5 // 4 + 8
        messages = [ChatMessage("system", (TextPart(self.speech_system_prompt),)),
                    ChatMessage("user", (TextPart(SAY_PROMPT + text),))]
        return self.chat(messages, ChatOptions(max_new_tokens=min(needed, 32768), seed=seed), voice=voice)

    def check_speech(self, voice: str, options: ChatOptions) -> None:
        """Refuse what the talker cannot do, before any work: no talker, an unknown speaker, or
        room for fewer than two tokens (the talker starts from the answer's first two)."""
        if not self.voices:
            raise CapabilityError("this model has no talker: it answers in text only", param="voice")
        if voice not in self.voices:
            raise InvalidOptionError(f"unknown voice {voice!r}; this model speaks as {', '.join(self.voices)}", param="voice")
        if options.max_new_tokens < 2:
            raise InvalidOptionError("a spoken answer needs max_tokens of at least 2", param="max_tokens")

    def estimate_bytes(self, positions: int) -> int:
        """Working memory a request of `positions` tokens adds: its KV cache plus hidden states."""
        text = self.model.config.get_text_config()
        heads = text.num_attention_heads
        head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
        kv_heads = getattr(text, "num_key_value_heads", None) or heads
        width = next(self.model.parameters()).element_size()
        kv = 2 * text.num_hidden_layers * kv_heads * head_dim * positions * width
        return int(kv + 4 * text.hidden_size * positions * width)

    def _check_memory(self, positions: int) -> None:
        if self.memory_budget is None:
            return
        need = self.estimate_bytes(positions)
        if need > self.memory_budget:
            raise PayloadTooLargeError(
                f"this request needs about {need / 2**20:.1f} MB of working memory, over the model's budget of "
                f"{self.memory_budget / 2**20:.1f} MB; send less audio or fewer tokens", param="messages",
            )

    def count_audio_tokens(self, messages: list[ChatMessage]) -> int:
        """How many prompt positions the processor gave to audio (for tests and memory estimates)."""
        ids = self._inputs(messages)["input_ids"][0].tolist()
        audio_id = getattr(self.processor, "audio_token_id", None)
        if audio_id is None:
            audio_id = self.processor.tokenizer.convert_tokens_to_ids(self.processor.audio_token)
        return sum(1 for t in ids if t == audio_id)

    def _inputs(self, messages: list[ChatMessage]):
        conversation = [
            {
                "role": m.role,
                "content": [
                    {"type": "audio", "audio": p.samples} if isinstance(p, AudioPart) else {"type": "text", "text": p.text}
                    for p in m.parts
                ],
            }
            for m in messages
        ]
        try:
            inputs = self.processor.apply_chat_template(
                conversation, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt",
                processor_kwargs={"sampling_rate": 16_000},
            )
        except (ValueError, TypeError) as exc:
            raise CapabilityError(f"the model's processor refused the conversation: {_first_line(exc)}", param="messages") from None
        return inputs.to(self.device)

    def _json_processor(self, schema: str):
        xgr = require("xgrammar", "alm", "constrained JSON output")

        with self._lock:
            if self._tokenizer_info is None:
                vocab = self.thinker.get_output_embeddings().weight.shape[0]  # padded past the tokenizer
                self._tokenizer_info = xgr.TokenizerInfo.from_huggingface(self.processor.tokenizer, vocab_size=vocab)
            compiled = self._grammars.get(schema)
            if compiled is None:
                compiler = xgr.GrammarCompiler(self._tokenizer_info)
                # No free whitespace: a weak model would otherwise pad the object until it runs out of tokens.
                if schema == "{}":
                    compiled = compiler.compile_builtin_json_grammar()
                else:
                    try:
                        compiled = compiler.compile_json_schema(schema, any_whitespace=False)
                    except (RuntimeError, ValueError) as exc:
                        raise InvalidOptionError(f"the JSON schema cannot be compiled: {_first_line(exc)}", param="response_format") from None
                self._grammars[schema] = compiled
                while len(self._grammars) > _GRAMMARS_KEPT:
                    self._grammars.popitem(last=False)
            else:
                self._grammars.move_to_end(schema)
        return xgr.contrib.hf.LogitsProcessor(compiled)  # a fresh matcher per generate call


class _DeltaStreamer:
    """A transformers streamer that hands on text deltas (whole characters only)."""

    def __init__(self, tokenizer, on_text: OnText) -> None:
        self.tokenizer, self.on_text = tokenizer, on_text
        self.tokens: list[int] = []
        self.sent = ""
        self.prompt_seen = False

    def put(self, value) -> None:
        if not self.prompt_seen:  # generate() first passes the prompt
            self.prompt_seen = True
            return
        self.tokens += value.reshape(-1).tolist()
        self._emit(final=False)

    def end(self) -> None:
        self._emit(final=True)

    def _emit(self, final: bool) -> None:
        text = self.tokenizer.decode(self.tokens, skip_special_tokens=True)
        if not final and text.endswith("\ufffd"):  # half a multi-byte character: wait for the rest
            return
        if len(text) > len(self.sent) and text.startswith(self.sent):
            delta, self.sent = text[len(self.sent):], text
            self.on_text(delta)


def _eos_ids(generation_config) -> set[int]:
    eos = generation_config.eos_token_id
    return set(eos if isinstance(eos, (list, tuple)) else [eos] if eos is not None else [])


def _speech_rate(config: Any) -> int:
    token2wav = getattr(config, "token2wav_config", None)
    for name in ("sampling_rate", "sample_rate"):
        rate = getattr(token2wav, name, None)
        if isinstance(rate, int) and rate > 0:
            return rate
    return DEFAULT_SPEECH_RATE


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
