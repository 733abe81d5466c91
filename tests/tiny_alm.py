"""Tiny, randomly initialised audio-language checkpoints, built offline for the tests.

Following ../shared/tiny-checkpoints.md: a byte-level BPE trained in a fraction of a second on
transformers' own source, wrapped in the real Qwen2Tokenizer; the real processor and config
classes with tiny sizes; `save_pretrained`, so harken loads them with its ordinary code.
Random weights prove the plumbing (prompts, audio tokens, generation, constrained JSON), never
quality.
"""

from __future__ import annotations

import json
from pathlib import Path

QWEN_PRETOKENIZE_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

AF3_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] if part['type'] == 'audio' %}<sound>{% endfor %}"
    "{% for part in message['content'] if part['type'] == 'text' %}{{ part['text'] }}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _tokenizer(specials: list[str], named: dict[str, str]):
    import transformers
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from tokenizers import AddedToken
    from transformers import Qwen2Tokenizer

    source = Path(transformers.__file__).parent
    corpus = [p.read_text(errors="ignore") for p in sorted(source.glob("generation/*.py"))[:12]]
    corpus += ["system user assistant\n" * 50, '{"gender": "male", "primary_emotion": "neutral"} true false null\n' * 50]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        corpus,
        trainers.BpeTrainer(vocab_size=1024, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()),
    )
    state = json.loads(tok.to_str())
    vocab, merges = state["model"]["vocab"], [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in state["model"]["merges"]]
    hf = Qwen2Tokenizer(
        vocab=vocab, merges=merges, unk_token=None, bos_token=None, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        extra_special_tokens=named,
    )
    hf.add_tokens([AddedToken(s, special=True, normalized=False) for s in specials], special_tokens=True)
    return hf


def _text_config(tok, **extra):
    from transformers import Qwen2Config

    return Qwen2Config(
        vocab_size=len(tok) + 16, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096, **extra,
    )


def _generation_config(tok):
    from transformers import GenerationConfig

    ids = tok.convert_tokens_to_ids
    return GenerationConfig(eos_token_id=[ids("<|im_end|>"), ids("<|endoftext|>")], pad_token_id=ids("<|endoftext|>"))


def _sanitize(model) -> None:
    import torch

    with torch.no_grad():
        for p in model.parameters():
            if not torch.isfinite(p).all() or p.abs().max() > 100:
                p.normal_(0.0, 0.02)


def build_qwen2_audio(out: Path) -> Path:
    import torch
    from transformers import (
        Qwen2AudioConfig,
        Qwen2AudioEncoderConfig,
        Qwen2AudioForConditionalGeneration,
        Qwen2AudioProcessor,
        WhisperFeatureExtractor,
    )

    torch.manual_seed(0)
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>"]
    tok = _tokenizer(specials, {"audio_token": "<|AUDIO|>", "audio_bos_token": "<|audio_bos|>", "audio_eos_token": "<|audio_eos|>"})
    processor = Qwen2AudioProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=128), tokenizer=tok)
    processor.chat_template = processor.default_chat_template
    config = Qwen2AudioConfig(
        audio_config=Qwen2AudioEncoderConfig(
            num_mel_bins=128, d_model=64, encoder_layers=2, encoder_attention_heads=4, encoder_ffn_dim=128,
            max_source_positions=1500,
        ),
        text_config=_text_config(tok),
        audio_token_index=tok.convert_tokens_to_ids("<|AUDIO|>"),
    )
    model = Qwen2AudioForConditionalGeneration(config)
    _sanitize(model)
    model.generation_config = _generation_config(tok)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def build_audioflamingo3(out: Path) -> Path:
    import torch
    from transformers import (
        AudioFlamingo3Config,
        AudioFlamingo3ForConditionalGeneration,
        AudioFlamingo3Processor,
        WhisperFeatureExtractor,
    )

    torch.manual_seed(0)
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<sound>"]
    tok = _tokenizer(specials, {"audio_token": "<sound>"})
    tok.chat_template = AF3_TEMPLATE
    processor = AudioFlamingo3Processor(
        feature_extractor=WhisperFeatureExtractor(feature_size=128), tokenizer=tok, chat_template=AF3_TEMPLATE,
        audio_token="<sound>",
    )
    config = AudioFlamingo3Config(
        audio_config={
            "model_type": "audioflamingo3_encoder", "hidden_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 4, "intermediate_size": 128, "num_mel_bins": 128, "max_source_positions": 1500,
        },
        text_config=_text_config(tok).to_dict(),
        audio_token_id=tok.convert_tokens_to_ids("<sound>"),
    )
    model = AudioFlamingo3ForConditionalGeneration(config)
    _sanitize(model)
    model.generation_config = _generation_config(tok)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


BUILDERS = {"qwen2-audio": build_qwen2_audio, "audioflamingo3": build_audioflamingo3}
