"""The Steps twins of real Llama-family shapes: parameters of each original and its twin, counted by building both.

The shapes are typed from the published ``config.json`` of each model on the Hugging Face hub (only the fields
that set the shape and the ones the twin carries over); nothing is downloaded. Both models are built on the meta
device: no memory, no compute, exact parameter counts.
"""
from __future__ import annotations

from typing import Any, Dict, List

import torch
from transformers import AutoConfig, AutoModelForCausalLM

from stepsnet.models.steps_llama import StepsLlamaForCausalLM, steps_twin_config

__all__ = ['REAL_SHAPES', 'parity_table', 'format_parity_table', 'PARITY_TOLERANCE']

PARITY_TOLERANCE = 0.005  # a twin's parameters are within 0.5% of the original's

# Values of the published config.json files (hub ids in the keys' comments).
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
    # mistralai/Mistral-7B-v0.1
    'Mistral-7B': dict(model_type='mistral', vocab_size=32000, hidden_size=4096, intermediate_size=14336,
                       num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
                       max_position_embeddings=32768, rms_norm_eps=1e-5, rope_theta=10000.0, sliding_window=4096,
                       tie_word_embeddings=False),
    # Qwen/Qwen2-0.5B
    'Qwen2-0.5B': dict(model_type='qwen2', vocab_size=151936, hidden_size=896, intermediate_size=4864,
                       num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2, rms_norm_eps=1e-6,
                       rope_theta=1000000.0, tie_word_embeddings=True),
    # TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T
    'TinyLlama-1.1B': dict(model_type='llama', vocab_size=32000, hidden_size=2048, intermediate_size=5632,
                           num_hidden_layers=22, num_attention_heads=32, num_key_value_heads=4,
                           max_position_embeddings=2048, rms_norm_eps=1e-5, rope_theta=10000.0,
                           tie_word_embeddings=False),
}


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())  # tied weights once


def parity_table(names: List[str] = None, num_steps: int = 3) -> List[Dict[str, Any]]:
    """One row per shape: the original's parameters (transformers' own class), the twin's plan and parameters."""
    rows = []
    for name in names or list(REAL_SHAPES):
        fields = dict(REAL_SHAPES[name])
        config = AutoConfig.for_model(fields.pop('model_type'), **fields)
        twin = steps_twin_config(config, num_steps=num_steps)
        with torch.device('meta'):
            original = _count(AutoModelForCausalLM.from_config(config))
            steps = _count(StepsLlamaForCausalLM(twin))
        rows.append(dict(model=name, family=config.model_type, params=original, plan=str(twin.plan()),
                         blocks=twin.num_hidden_layers, twin_params=steps, diff=(steps - original) / original))
    return rows


def format_parity_table(rows: List[Dict[str, Any]]) -> str:
    """Markdown table of :func:`parity_table` rows."""
    lines = ['| model | layers | params | Steps twin plan (width/heads x blocks) | blocks | twin params | twin - '
             'original |', '|---|---|---|---|---|---|---|']
    for r in rows:
        lines.append(f'| {r["model"]} ({r["family"]}) | {REAL_SHAPES[r["model"]]["num_hidden_layers"]} | '
                     f'{r["params"] / 1e6:,.1f}M | {r["plan"]} | {r["blocks"]} | {r["twin_params"] / 1e6:,.1f}M | '
                     f'{100 * r["diff"]:+.2f}% |')
    return '\n'.join(lines) + '\n'


TABLE_MARKERS = ('<!-- llama-parity:begin -->', '<!-- llama-parity:end -->')
