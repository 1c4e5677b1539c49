"""The Steps twins of real model shapes: parameters of each original and its twin, counted by building both.

The shapes are typed from the published ``config.json`` of each model on the Hugging Face hub (only the fields
that set the shape); nothing is downloaded. Both models are built on the meta device: no memory, no compute, exact
parameter counts. The twin is :func:`stepsnet.hf.steps_twin_config`'s (the host's own layers, head width kept).

Why a twin can miss the 0.5% mark: its narrower steps have whole heads of the host's head width, so a step's width
is the multiple of ``hidden / heads`` nearest ``hidden / sqrt2^k``. Where that multiple is far from the exact width
(few heads, e.g. Gemma's 8 heads of 288 channels: 2304 / sqrt2 = 1629 -> 1728), the blocks of that step carry
``(1728 / 1629)^2 - 1 = 12.5%`` more parameters than the plan's compute model assumes. :func:`rounding_note` says it
for a row. The default, ``feedforward='matched'`` (see :func:`stepsnet.hf.steps_decoder.matched_feedforward`), sizes
the narrower steps' feed-forward layers to absorb that rounding instead of scaling them with the width; the tables
show both, the plain rule (``feedforward='scaled'``) first.
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Optional

import torch
from transformers import AutoConfig, AutoModelForCausalLM

from stepsnet.hf.steps_decoder import steps_twin_config
from stepsnet.utils.meta import on_meta

__all__ = ['REAL_SHAPES', 'parity_table', 'format_parity_table', 'rounding_note', 'PARITY_TOLERANCE',
           'TABLE_MARKERS']

PARITY_TOLERANCE = 0.005  # a twin's parameters are within 0.5% of the original's

# Values of the published config.json files (hub ids in the comments): the fields that set the parameter count.
REAL_SHAPES: Dict[str, Dict[str, Any]] = {
    # meta-llama/Llama-2-7b-hf
    'Llama-2-7B': dict(model_type='llama', vocab_size=32000, hidden_size=4096, intermediate_size=11008,
                       num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32,
                       max_position_embeddings=4096, rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False),
    # meta-llama/Meta-Llama-3-8B
    'Llama-3-8B': dict(model_type='llama', vocab_size=128256, hidden_size=4096, intermediate_size=14336,
                       num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
                       max_position_embeddings=8192, rms_norm_eps=1e-5, rope_theta=500000.0,
                       tie_word_embeddings=False),
    # TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T
    'TinyLlama-1.1B': dict(model_type='llama', vocab_size=32000, hidden_size=2048, intermediate_size=5632,
                           num_hidden_layers=22, num_attention_heads=32, num_key_value_heads=4,
                           max_position_embeddings=2048, rms_norm_eps=1e-5, rope_theta=10000.0,
                           tie_word_embeddings=False),
    # Qwen/Qwen2-0.5B
    'Qwen2-0.5B': dict(model_type='qwen2', vocab_size=151936, hidden_size=896, intermediate_size=4864,
                       num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2, rms_norm_eps=1e-6,
                       rope_theta=1000000.0, tie_word_embeddings=True),
    # Qwen/Qwen3-0.6B
    'Qwen3-0.6B': dict(model_type='qwen3', vocab_size=151936, hidden_size=1024, intermediate_size=3072,
                       num_hidden_layers=28, num_attention_heads=16, num_key_value_heads=8, head_dim=128,
                       max_position_embeddings=40960, rms_norm_eps=1e-6, rope_theta=1000000.0,
                       tie_word_embeddings=True),
    # mistralai/Mistral-7B-v0.1
    'Mistral-7B': dict(model_type='mistral', vocab_size=32000, hidden_size=4096, intermediate_size=14336,
                       num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
                       max_position_embeddings=32768, rms_norm_eps=1e-5, rope_theta=10000.0, sliding_window=4096,
                       tie_word_embeddings=False),
    # mistralai/Mixtral-8x7B-v0.1
    'Mixtral-8x7B': dict(model_type='mixtral', vocab_size=32000, hidden_size=4096, intermediate_size=14336,
                         num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8, num_local_experts=8,
                         num_experts_per_tok=2, max_position_embeddings=32768, rms_norm_eps=1e-5,
                         rope_theta=1000000.0, tie_word_embeddings=False),
    # Qwen/Qwen1.5-MoE-A2.7B
    'Qwen1.5-MoE-A2.7B': dict(model_type='qwen2_moe', vocab_size=151936, hidden_size=2048, intermediate_size=5632,
                              moe_intermediate_size=1408, shared_expert_intermediate_size=5632, num_experts=60,
                              num_experts_per_tok=4, num_hidden_layers=24, num_attention_heads=16,
                              num_key_value_heads=16, max_position_embeddings=8192, rope_theta=1000000.0,
                              tie_word_embeddings=False),
    # Qwen/Qwen3-30B-A3B
    'Qwen3-30B-A3B': dict(model_type='qwen3_moe', vocab_size=151936, hidden_size=2048, intermediate_size=6144,
                          moe_intermediate_size=768, num_experts=128, num_experts_per_tok=8, num_hidden_layers=48,
                          num_attention_heads=32, num_key_value_heads=4, head_dim=128,
                          max_position_embeddings=40960, rope_theta=1000000.0, tie_word_embeddings=False),
    # openai/gpt-oss-20b
    'gpt-oss-20b': dict(model_type='gpt_oss', vocab_size=201088, hidden_size=2880, intermediate_size=2880,
                        num_hidden_layers=24, num_attention_heads=64, num_key_value_heads=8, head_dim=64,
                        num_local_experts=32, num_experts_per_tok=4, sliding_window=128,
                        max_position_embeddings=131072, tie_word_embeddings=False),
    # google/gemma-2b
    'Gemma-2B': dict(model_type='gemma', vocab_size=256000, hidden_size=2048, intermediate_size=16384,
                     num_hidden_layers=18, num_attention_heads=8, num_key_value_heads=1, head_dim=256,
                     max_position_embeddings=8192),
    # google/gemma-2-2b
    'Gemma-2-2B': dict(model_type='gemma2', vocab_size=256000, hidden_size=2304, intermediate_size=9216,
                       num_hidden_layers=26, num_attention_heads=8, num_key_value_heads=4, head_dim=256,
                       query_pre_attn_scalar=256, sliding_window=4096, max_position_embeddings=8192),
    # google/gemma-3-1b-pt
    'Gemma-3-1B': dict(model_type='gemma3_text', vocab_size=262144, hidden_size=1152, intermediate_size=6912,
                       num_hidden_layers=26, num_attention_heads=4, num_key_value_heads=1, head_dim=256,
                       query_pre_attn_scalar=256, sliding_window=512, max_position_embeddings=32768),
    # microsoft/Phi-3-mini-4k-instruct
    'Phi-3-mini': dict(model_type='phi3', vocab_size=32064, hidden_size=3072, intermediate_size=8192,
                       num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32,
                       max_position_embeddings=4096, sliding_window=2047, tie_word_embeddings=False),
    # microsoft/phi-2
    'Phi-2': dict(model_type='phi', vocab_size=51200, hidden_size=2560, intermediate_size=10240, num_hidden_layers=32,
                  num_attention_heads=32, num_key_value_heads=32, partial_rotary_factor=0.4,
                  max_position_embeddings=2048, tie_word_embeddings=False),
    # allenai/OLMo-2-0425-1B
    'OLMo-2-1B': dict(model_type='olmo2', vocab_size=100352, hidden_size=2048, intermediate_size=8192,
                      num_hidden_layers=16, num_attention_heads=16, num_key_value_heads=16,
                      max_position_embeddings=4096, rope_theta=500000.0, tie_word_embeddings=False),
    # allenai/OLMo-2-1124-7B
    'OLMo-2-7B': dict(model_type='olmo2', vocab_size=100352, hidden_size=4096, intermediate_size=11008,
                      num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32,
                      max_position_embeddings=4096, rope_theta=500000.0, tie_word_embeddings=False),
    # EleutherAI/pythia-160m
    'Pythia-160M': dict(model_type='gpt_neox', vocab_size=50304, hidden_size=768, intermediate_size=3072,
                        num_hidden_layers=12, num_attention_heads=12, rotary_pct=0.25, max_position_embeddings=2048,
                        tie_word_embeddings=False),
    # EleutherAI/pythia-1.4b
    'Pythia-1.4B': dict(model_type='gpt_neox', vocab_size=50304, hidden_size=2048, intermediate_size=8192,
                        num_hidden_layers=24, num_attention_heads=16, rotary_pct=0.25, max_position_embeddings=2048,
                        tie_word_embeddings=False),
    # openai-community/gpt2 (n_inner unset in the file: 4 x 768)
    'GPT-2': dict(model_type='gpt2', vocab_size=50257, n_embd=768, n_layer=12, n_head=12, n_inner=3072,
                  n_positions=1024),
    # ibm-granite/granite-3.0-2b-base
    'Granite-3.0-2B': dict(model_type='granite', vocab_size=49155, hidden_size=2048, intermediate_size=8192,
                           num_hidden_layers=40, num_attention_heads=32, num_key_value_heads=8,
                           max_position_embeddings=4096, embedding_multiplier=12.0, logits_scaling=8.0,
                           residual_multiplier=0.22, attention_multiplier=0.015625, tie_word_embeddings=True),
    # bigcode/starcoder2-3b
    'StarCoder2-3B': dict(model_type='starcoder2', vocab_size=49152, hidden_size=3072, intermediate_size=12288,
                          num_hidden_layers=30, num_attention_heads=24, num_key_value_heads=2,
                          max_position_embeddings=16384, sliding_window=4096, tie_word_embeddings=True),
    # CohereForAI/c4ai-command-r-v01
    'Command-R-35B': dict(model_type='cohere', vocab_size=256000, hidden_size=8192, intermediate_size=22528,
                          num_hidden_layers=40, num_attention_heads=64, num_key_value_heads=64,
                          max_position_embeddings=8192, logit_scale=0.0625, tie_word_embeddings=True),
    # HuggingFaceTB/SmolLM3-3B
    'SmolLM3-3B': dict(model_type='smollm3', vocab_size=128256, hidden_size=2048, intermediate_size=11008,
                       num_hidden_layers=36, num_attention_heads=16, num_key_value_heads=4,
                       no_rope_layer_interval=4, max_position_embeddings=65536, tie_word_embeddings=True),
}


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())  # tied weights once


def rounding_note(hidden_size: int, num_attention_heads: int, plan) -> str:
    """Why a twin's parameters differ from the plan's compute model: each narrower step's width against the exact one.

    Returns e.g. ``'2304/sqrt2 = 1629 -> 1728 (+12.5% per block)'`` for every step whose width is not the exact
    ``hidden / sqrt2^k``, or ``''`` when none is more than 1% off (1% in width: 2% in a block's parameters).
    """
    notes = []
    for k, w in zip(range(plan.num_steps - 1, 0, -1), plan.widths):
        exact = hidden_size / math.sqrt(2) ** k
        if abs(w / exact - 1) > 0.01:
            power = 'sqrt2' if k == 1 else f'sqrt2^{k}'
            notes.append(f'{hidden_size}/{power} = {exact:.0f} -> {w} ({100 * ((w / exact) ** 2 - 1):+.1f}% per block)')
    return '; '.join(notes)


def parity_table(names: Optional[List[str]] = None, num_steps: int = 3) -> List[Dict[str, Any]]:
    """One row per shape: the original's parameters (transformers' own class), the twin's plan and parameters.

    ``diff`` is the twin rule's (feed-forward widths scaled with the step's width), ``matched_diff`` that of
    ``feedforward='matched'``; ``note`` is :func:`rounding_note`.
    """
    rows = []
    for name in names or list(REAL_SHAPES):
        fields = dict(REAL_SHAPES[name])
        config = AutoConfig.for_model(fields.pop('model_type'), **fields)
        twin = steps_twin_config(config, num_steps=num_steps, feedforward='scaled')
        matched = steps_twin_config(config, num_steps=num_steps, feedforward='matched')
        with on_meta():
            original = _count(AutoModelForCausalLM.from_config(config))
            steps = _count(AutoModelForCausalLM.from_config(twin))
            steps_matched = _count(AutoModelForCausalLM.from_config(matched))
        plan = twin.plan()
        rows.append(dict(model=name, family=config.model_type, layers=config.num_hidden_layers, params=original,
                         plan=str(plan), blocks=twin.num_hidden_layers, twin_params=steps,
                         diff=(steps - original) / original, matched_diff=(steps_matched - original) / original,
                         note=rounding_note(config.hidden_size, config.num_attention_heads, plan)))
    return rows


def format_parity_table(rows: List[Dict[str, Any]]) -> str:
    """Markdown table of :func:`parity_table` rows."""
    lines = ['| model | layers | params | Steps twin plan (width/heads x blocks) | blocks | twin params | twin - '
             'original | matched feed-forward | where whole heads miss the exact width |', '|---' * 9 + '|']
    for r in rows:
        note = r['note'] if abs(r['diff']) > PARITY_TOLERANCE else ''
        lines.append(f'| {r["model"]} ({r["family"]}) | {r["layers"]} | {r["params"] / 1e6:,.1f}M | {r["plan"]} | '
                     f'{r["blocks"]} | {r["twin_params"] / 1e6:,.1f}M | {100 * r["diff"]:+.2f}% | '
                     f'{100 * r["matched_diff"]:+.2f}% | {note} |')
    return '\n'.join(lines) + '\n'


TABLE_MARKERS = ('<!-- llama-parity:begin -->', '<!-- llama-parity:end -->')
