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

    sizes = {"hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4, "num_key_value_heads": 2} | extra
    return Qwen2Config(vocab_size=len(tok) + 16, num_hidden_layers=2, max_position_embeddings=4096, **sizes)


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


def _save(model, processor, tok, out: Path) -> Path:
    """Sanitise random weights, give the model ChatML stop tokens, and save it with its processor."""
    _sanitize(model)
    model.generation_config = _generation_config(tok)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def build_qwen2_audio(out: Path) -> Path:
    return _build_qwen2_audio(out, {})


# vLLM's CPU attention supports head_dim 32, 64, 80, 96, 112, 128, ... but not the 16 above: the
# engine starts, then its first request dies ("Unsupported CPU attention configuration:
# head_dim=16"). Hidden 128 over 2 heads gives 64 and keeps the model tiny (about 0.7 M parameters).
VLLM_TEXT_SIZES = {"hidden_size": 128, "intermediate_size": 256, "num_attention_heads": 2, "num_key_value_heads": 2}


def build_qwen2_audio_vllm(out: Path) -> Path:
    """The tiny Qwen2-Audio with a head_dim vLLM's CPU backend accepts (tests/vllm_upstream.py)."""
    return _build_qwen2_audio(out, VLLM_TEXT_SIZES)


def _build_qwen2_audio(out: Path, text_sizes: dict) -> Path:
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
        text_config=_text_config(tok, **text_sizes),
        audio_token_index=tok.convert_tokens_to_ids("<|AUDIO|>"),
    )
    model = Qwen2AudioForConditionalGeneration(config)
    return _save(model, processor, tok, out)


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
    return _save(model, processor, tok, out)


BUILDERS = {"qwen2-audio": build_qwen2_audio, "audioflamingo3": build_audioflamingo3}


OMNI_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'audio' %}<|audio_bos|><|AUDIO|><|audio_eos|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_qwen2_5_omni(out: Path) -> Path:
    """A Qwen2.5-Omni thinker. Saving its processor needs a video processor; the real,
    torchvision-free base class stands in (audio-only use never calls it)."""
    import torch
    from transformers import Qwen2_5OmniProcessor, Qwen2_5OmniThinkerConfig, Qwen2_5OmniThinkerForConditionalGeneration
    from transformers import WhisperFeatureExtractor
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
    from transformers.video_processing_utils import BaseVideoProcessor

    from harken.engines.alm_processor import torchvision_free_video

    torch.manual_seed(0)
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>",
                "<|vision_bos|>", "<|vision_eos|>", "<|vision_pad|>", "<|IMAGE|>", "<|VIDEO|>"]
    named = {"audio_token": "<|AUDIO|>", "audio_bos_token": "<|audio_bos|>", "audio_eos_token": "<|audio_eos|>",
             "image_token": "<|IMAGE|>", "video_token": "<|VIDEO|>", "vision_bos_token": "<|vision_bos|>",
             "vision_eos_token": "<|vision_eos|>"}
    tok = _tokenizer(specials, named)
    ids = tok.convert_tokens_to_ids
    with torchvision_free_video():  # the product's own stand-in for a torchvision video processor
        processor = Qwen2_5OmniProcessor(
            image_processor=Qwen2VLImageProcessorPil(), video_processor=BaseVideoProcessor(),
            feature_extractor=WhisperFeatureExtractor(feature_size=128), tokenizer=tok, chat_template=OMNI_TEMPLATE,
        )
    config = Qwen2_5OmniThinkerConfig(
        audio_config={"num_mel_bins": 128, "d_model": 64, "encoder_layers": 2, "encoder_attention_heads": 4,
                      "encoder_ffn_dim": 128, "n_window": 100, "output_dim": 64, "max_source_positions": 1500},
        vision_config={"depth": 1, "hidden_size": 32, "num_heads": 2, "intermediate_size": 64, "out_hidden_size": 64,
                       "fullatt_block_indexes": [0]},
        text_config={"vocab_size": len(tok) + 16, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                     "num_attention_heads": 4, "num_key_value_heads": 2,
                     "rope_parameters": {"rope_type": "default", "mrope_section": [2, 3, 3]}},
        audio_token_index=ids("<|AUDIO|>"), image_token_index=ids("<|IMAGE|>"), video_token_index=ids("<|VIDEO|>"),
        audio_start_token_id=ids("<|audio_bos|>"), audio_end_token_id=ids("<|audio_eos|>"),
        user_token_id=ids("user") if ids("user") is not None else 0,
        vision_start_token_id=ids("<|vision_bos|>"), vision_end_token_id=ids("<|vision_eos|>"),
        vision_token_id=ids("<|vision_pad|>"),
    )
    model = Qwen2_5OmniThinkerForConditionalGeneration(config)
    return _save(model, processor, tok, out)


BUILDERS["qwen2.5-omni"] = build_qwen2_5_omni


QWEN3_OMNI_TEMPLATE = OMNI_TEMPLATE.replace("<|audio_bos|><|AUDIO|><|audio_eos|>", "<|audio_start|><|audio_pad|><|audio_end|>")


def build_qwen3_omni(out: Path) -> Path:
    """A Qwen3-Omni-MoE thinker (what the Instruct, Thinking and Captioner checkpoints load as)."""
    import torch
    from transformers import (
        Qwen3OmniMoeProcessor,
        Qwen3OmniMoeThinkerConfig,
        Qwen3OmniMoeThinkerForConditionalGeneration,
        WhisperFeatureExtractor,
    )
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
    from transformers.video_processing_utils import BaseVideoProcessor

    from harken.engines.alm_processor import torchvision_free_video

    torch.manual_seed(0)
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
                "<|image_pad|>", "<|video_pad|>", "<think>", "</think>", "<|audio_start|>", "<|audio_end|>", "<|audio_pad|>"]
    named = {"audio_token": "<|audio_pad|>", "audio_bos_token": "<|audio_start|>", "audio_eos_token": "<|audio_end|>",
             "image_token": "<|image_pad|>", "video_token": "<|video_pad|>", "vision_bos_token": "<|vision_start|>",
             "vision_eos_token": "<|vision_end|>"}
    tok = _tokenizer(specials, named)
    ids = tok.convert_tokens_to_ids
    with torchvision_free_video():
        processor = Qwen3OmniMoeProcessor(
            image_processor=Qwen2VLImageProcessorPil(patch_size=16), video_processor=BaseVideoProcessor(),
            feature_extractor=WhisperFeatureExtractor(feature_size=128), tokenizer=tok, chat_template=QWEN3_OMNI_TEMPLATE,
        )
    config = Qwen3OmniMoeThinkerConfig(
        audio_config={"num_mel_bins": 128, "d_model": 64, "encoder_layers": 2, "encoder_attention_heads": 4,
                      "encoder_ffn_dim": 128, "output_dim": 64, "downsample_hidden_size": 16, "n_window": 50,
                      "max_source_positions": 1500},
        vision_config={"depth": 1, "hidden_size": 32, "num_heads": 2, "intermediate_size": 64, "out_hidden_size": 64,
                       "patch_size": 16, "deepstack_visual_indexes": [0]},
        text_config={"vocab_size": len(tok) + 16, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                     "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "num_experts": 4,
                     "num_experts_per_tok": 2, "moe_intermediate_size": 32,
                     "rope_parameters": {"rope_type": "default", "mrope_section": [4, 2, 2], "interleaved": True}},
        audio_token_id=ids("<|audio_pad|>"), image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
        audio_start_token_id=ids("<|audio_start|>"), user_token_id=ids("user") or 0,
        vision_start_token_id=ids("<|vision_start|>"), audio_end_token_id=ids("<|audio_end|>"),
    )
    model = Qwen3OmniMoeThinkerForConditionalGeneration(config)
    return _save(model, processor, tok, out)


BUILDERS["qwen3-omni"] = build_qwen3_omni
