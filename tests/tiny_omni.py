"""A tiny, randomly initialised FULL Qwen2.5-Omni checkpoint: thinker, talker and token2wav.

Following ../shared/tiny-checkpoints.md (4.3, P6, P7): the thinker is tests/tiny_alm.py's own
(built there, then its config, weights and processor reused as they are), the talker and the
token2wav are tiny, and `spk_dict.pt` names two speakers, Chelsie and Ethan, as the real
checkpoint does. Random weights: the speech is noise (near silence), good for checking formats,
rates, durations and streaming, never content.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.tiny_alm import _generation_config, _sanitize, build_qwen2_5_omni

__all__ = ["build_qwen2_5_omni_full", "SPEAKERS"]

SPEAKERS = ("Chelsie", "Ethan")
CODEC_VOCAB = 64  # the talker's codec vocabulary; its control ids sit at the top
SPEAKER_EMBEDDING = 16  # the DiT's enc_emb_dim: the size of each speaker's `cond`


def build_qwen2_5_omni_full(out: Path) -> Path:
    import torch
    from transformers import (
        AutoConfig, Qwen2_5OmniConfig, Qwen2_5OmniForConditionalGeneration, Qwen2_5OmniThinkerForConditionalGeneration,
    )

    from harken.engines.alm_processor import load_processor

    thinker_dir = out.with_name(out.name + "-thinker-part")
    build_qwen2_5_omni(thinker_dir)
    processor = load_processor(thinker_dir)
    tok = processor.tokenizer
    ids = tok.convert_tokens_to_ids
    thinker_config = AutoConfig.from_pretrained(thinker_dir)
    # P6: the talker reads vision_start/end ids it does not declare; P7: its control ids must lie
    # in its own (tiny) codec vocabulary, its text ids in the thinker's.
    talker = dict(
        vocab_size=CODEC_VOCAB, embedding_size=thinker_config.text_config.hidden_size, hidden_size=32,
        intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1, head_dim=16,
        rope_parameters={"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 1e6},
        tts_codec_pad_token_id=CODEC_VOCAB - 5, tts_codec_start_token_id=CODEC_VOCAB - 4,
        tts_codec_end_token_id=CODEC_VOCAB - 3, tts_codec_mask_token_id=CODEC_VOCAB - 1,
        tts_text_start_token_id=ids("<|im_start|>"), tts_text_end_token_id=ids("<|im_end|>"),
        tts_text_pad_token_id=ids("<|endoftext|>"),
        audio_token_index=thinker_config.audio_token_index, image_token_index=thinker_config.image_token_index,
        video_token_index=thinker_config.video_token_index, audio_start_token_id=thinker_config.audio_start_token_id,
        audio_end_token_id=thinker_config.audio_end_token_id,
        vision_start_token_id=ids("<|vision_bos|>"), vision_end_token_id=ids("<|vision_eos|>"),
    )
    # BigVGAN keeps the real upsampling (x240 per mel frame); 128 initial channels, since six x2
    # halvings of fewer reach zero channels.
    token2wav = dict(
        dit_config=dict(
            hidden_size=32, num_hidden_layers=1, num_attention_heads=2, head_dim=16, emb_dim=32, ff_mult=2,
            num_embeds=CODEC_VOCAB, mel_dim=80, enc_emb_dim=SPEAKER_EMBEDDING, enc_dim=16,
            enc_channels=[16, 16, 16, 16, 48], enc_attention_channels=8, enc_se_channels=8,
            look_ahead_layers=[0], look_backward_layers=[0],
        ),
        bigvgan_config=dict(mel_dim=80, upsample_initial_channel=128, resblock_kernel_sizes=[3],
                            resblock_dilation_sizes=[[1, 3, 5]]),
    )
    config = Qwen2_5OmniConfig(thinker_config=thinker_config.to_dict(), talker_config=talker,
                               token2wav_config=token2wav, enable_audio_output=True)
    torch.manual_seed(0)
    model = Qwen2_5OmniForConditionalGeneration(config)
    thinker = Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(thinker_dir)
    model.thinker.load_state_dict(thinker.state_dict(), strict=True)  # the thinker tiny_alm builds, as it is
    _sanitize(model)
    model.generation_config = _generation_config(tok)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    # from_pretrained refuses a full checkpoint without its speakers.
    torch.save(
        {name: {"bos_token": ids("<|im_start|>"), "cond": torch.randn(1, SPEAKER_EMBEDDING),
                "ref_mel": torch.randn(1, 40, 80)} for name in SPEAKERS},
        out / "spk_dict.pt",
    )
    shutil.rmtree(thinker_dir)
    return out
