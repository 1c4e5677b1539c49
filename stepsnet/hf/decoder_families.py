"""The decoder-only architectures of transformers that the Steps twin (:mod:`stepsnet.hf.steps_decoder`) covers, those
looked at and left out with why, and the twin rule's arithmetic: the plan with the head width kept, the feed-forward
widths of a step, and which host layer each block of a plan substitutes (for per-layer config lists). Plain Python:
nothing here builds a model."""
from __future__ import annotations

import dataclasses
import math
from fractions import Fraction
from typing import Any, Dict, List, Optional, Sequence, Tuple

from stepsnet.steps import StepPlan, plan_steps, step_width

__all__ = ['DecoderFamily', 'DECODERS', 'NOT_COVERED', 'twin_plan', 'step_feedforward_size', 'substituted_host_layers',
           'extend_per_layer']


@dataclasses.dataclass(frozen=True)
class DecoderFamily:
    """A decoder-only architecture of transformers that the twin mechanism is tested on.

    Attributes:
        model_type: The host config's ``model_type``.
        name: The family's name in tables.
        features: What the family's own code does that the twin keeps by reusing it (for the coverage table).
        feedforward_fields: Config fields of feed-forward widths, scaled with the step's width.
        layer_index_fields: Config fields that list layer indices (mapped to the twin's blocks).
        example: A tiny host config (hidden 64, 2 layers, vocabulary 256) for the smoke checks and tests.
    """
    model_type: str
    name: str
    features: str
    feedforward_fields: Tuple[str, ...] = ('intermediate_size',)
    layer_index_fields: Tuple[str, ...] = ()
    example: Dict[str, Any] = None


_TINY = dict(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=128, bos_token_id=None, eos_token_id=None,
             pad_token_id=None)
_TINY_MHA = {k: v for k, v in _TINY.items() if k not in ('num_key_value_heads', 'intermediate_size')}

_FAMILIES = [
    DecoderFamily('llama', 'Llama', 'RMSNorm, SwiGLU, rotary, grouped-query attention', example=dict(_TINY)),
    DecoderFamily('qwen2', 'Qwen2', 'q/k/v biases', example=dict(_TINY)),
    DecoderFamily('qwen3', 'Qwen3', 'q/k RMSNorm per head, head width apart from hidden / heads',
                  example=dict(_TINY, head_dim=32)),
    DecoderFamily('mistral', 'Mistral', 'sliding-window attention on every layer',
                  example=dict(_TINY, sliding_window=8)),
    DecoderFamily('mixtral', 'Mixtral', 'sparse mixture of experts (top-k router, fused experts)',
                  example=dict(_TINY, num_local_experts=4, num_experts_per_tok=2)),
    DecoderFamily('qwen2_moe', 'Qwen2-MoE', 'experts plus a gated shared expert, MoE every k-th layer',
                  feedforward_fields=('intermediate_size', 'moe_intermediate_size', 'shared_expert_intermediate_size'),
                  layer_index_fields=('mlp_only_layers',),
                  example=dict(_TINY, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=64,
                               shared_expert_intermediate_size=128)),
    DecoderFamily('qwen3_moe', 'Qwen3-MoE', 'experts, q/k norms, MoE every k-th layer',
                  feedforward_fields=('intermediate_size', 'moe_intermediate_size'),
                  layer_index_fields=('mlp_only_layers',),
                  example=dict(_TINY, head_dim=16, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=64)),
    DecoderFamily('gpt_oss', 'gpt-oss', 'experts with biases and clamped SwiGLU, attention sinks per head, '
                  'alternating sliding-window layers, YaRN rotary',
                  example=dict(_TINY, head_dim=16, num_local_experts=4, num_experts_per_tok=2, sliding_window=8,
                               max_position_embeddings=131072)),  # YaRN's 32 x 4096 positions
    DecoderFamily('gemma', 'Gemma', 'embeddings scaled by sqrt(hidden), (1 + w) RMSNorm, GeGLU',
                  example=dict(_TINY, head_dim=16)),
    DecoderFamily('gemma2', 'Gemma 2', 'pre/post feed-forward norms, sqrt(hidden) embedding scale, attention and '
                  'final-logit soft-capping, alternating sliding-window layers',
                  example=dict(_TINY, head_dim=16, sliding_window=8, query_pre_attn_scalar=16)),
    DecoderFamily('gemma3_text', 'Gemma 3 (text)', 'pre/post feed-forward norms, q/k norms, scaled embedding, '
                  'sliding / global layer pattern with a rotary base each',
                  example=dict(_TINY, num_hidden_layers=3, head_dim=16, sliding_window=8, query_pre_attn_scalar=16,
                               layer_types=['sliding_attention', 'sliding_attention', 'full_attention'])),
    DecoderFamily('phi3', 'Phi-3', 'fused qkv and gate/up projections, sliding window',
                  example=dict(_TINY, sliding_window=16)),
    DecoderFamily('phi', 'Phi (1, 1.5, 2)', 'parallel attention and MLP on one LayerNorm, partial rotary, biases, '
                  'its own names (dense, fc1, final_layernorm)',
                  example=dict(_TINY_MHA, intermediate_size=128, partial_rotary_factor=0.5)),
    DecoderFamily('olmo2', 'OLMo 2', 'norms after attention and MLP (not before), q/k RMSNorm over all heads',
                  example=dict(_TINY)),
    DecoderFamily('gpt_neox', 'GPT-NeoX (Pythia)', 'parallel residual, LayerNorm with biases, partial rotary, '
                  'fused qkv, its own names (gpt_neox.embed_in, embed_out)',
                  example=dict(_TINY_MHA, intermediate_size=128, rotary_pct=0.25)),
    DecoderFamily('gpt2', 'GPT-2', 'learned absolute positions, Conv1D layers, its own names (transformer.h, wte)',
                  feedforward_fields=('n_inner',), example=dict(_TINY_MHA, n_inner=128)),
    DecoderFamily('granite', 'Granite', 'embedding, residual, attention and logit multipliers',
                  example=dict(_TINY, embedding_multiplier=12.0, residual_multiplier=0.22,
                               attention_multiplier=0.0625, logits_scaling=8.0)),
    DecoderFamily('starcoder2', 'StarCoder2', 'LayerNorm and GELU MLP with biases, sliding window',
                  example=dict(_TINY, sliding_window=16)),
    DecoderFamily('cohere', 'Cohere', 'parallel attention and MLP on one LayerNorm, logit scale',
                  example=dict(_TINY)),
    DecoderFamily('smollm3', 'SmolLM3', 'no rotary positions on every k-th layer (no_rope_layers)',
                  example=dict(_TINY, num_hidden_layers=4, no_rope_layer_interval=2)),
]
DECODERS: Dict[str, DecoderFamily] = {f.model_type: f for f in _FAMILIES}
"""The families the twin is tested on (exact one-step logits, cache, save / load): tests/test_hf_decoders.py."""

_TUPLE_LAYERS = ("the layers return a tuple (hidden states, cache, attentions) that the host's loop unpacks "
                 "(transformers 4's convention); the trunk runs layers that return the hidden states")
NOT_COVERED: Dict[str, str] = {
    'gemma3': 'the multimodal Gemma3Config (vision tower and language model); its text model, Gemma3TextConfig '
              '(model_type gemma3_text), is covered',
    'gemma3n_text': "the per-layer input embedding has num_hidden_layers x hidden_size_per_layer_input columns, so "
                    "its size follows the layer count the twin changes, and the last num_kv_shared_layers layers "
                    "reuse the keys and values of earlier layers, which in a twin have other widths and head counts",
    'gpt_neo': _TUPLE_LAYERS, 'bloom': _TUPLE_LAYERS, 'falcon': _TUPLE_LAYERS, 'mpt': _TUPLE_LAYERS,
    'opt': 'the decoder layers and their loop are in a nested OPTDecoder, not in the base model the twin subclasses',
    'jamba': "the kind of each layer (Mamba or attention) is a read-only property of the config computed from "
             "attn_layer_period / attn_layer_offset, so the twin cannot give its added blocks a kind",
    'falcon_h1': 'the kind of each layer (layers_block_type) is a read-only property of the config, so the twin '
                 'cannot give its added blocks a kind',
    'dbrx': 'its heads and feed-forward widths are in nested sub-configs (attn_config, ffn_config), which a step '
            'config would share with the full-width layers',
    'jetmoe': 'no num_attention_heads: its attention is a mixture of attention experts (kv_channels, '
              'num_local_experts), so there are no heads for the rule to scale',
}
"""Architectures looked at and left out, with why."""


# ----------------------------------------------------------------------------------------------------------------
# The twin rule


def twin_plan(hidden_size: int, num_attention_heads: int, depth: int, num_steps: int,
              move: Optional[int] = None) -> StepPlan:
    """The trunk's plan with the head width kept: widths are whole numbers of heads of ``hidden / heads`` channels.

    Raises:
        ValueError: The heads do not divide the width, or the rounding gives two steps the same width (too few heads
            for that many steps).
    """
    if hidden_size % num_attention_heads:
        raise ValueError(f'hidden_size={hidden_size} is not a multiple of num_attention_heads={num_attention_heads}; '
                         f'the twin rule needs a whole number of channels per head')
    unit = hidden_size // num_attention_heads
    move = move if move is not None else max(1, depth // 2)
    widths = [step_width(hidden_size, level, multiple_of=unit)[0] for level in range(num_steps - 1, -1, -1)]
    if any(b <= a for a, b in zip(widths, widths[1:])):
        raise ValueError(f'{num_steps} steps below width {hidden_size} with {num_attention_heads} heads of '
                         f'{unit} channels round to widths {tuple(widths)}, not increasing; expected fewer steps or '
                         f'more heads')
    plan = plan_steps(hidden_size, depth, num_steps, move, multiple_of=unit)
    return StepPlan(plan.widths, plan.depths, tuple(w // unit for w in plan.widths))


def step_feedforward_size(size: int, width: int, hidden_size: int, multiple_of: int) -> int:
    """A feed-forward width scaled from the host's ``hidden_size`` to ``width``, to the nearest ``multiple_of``."""
    if width == hidden_size:
        return size
    return max(multiple_of, multiple_of * int(math.floor(size * width / hidden_size / multiple_of + 0.5)))


def substituted_host_layers(plan: StepPlan, depth: int) -> List[int]:
    """For every block of the plan, the host layer it substitutes (the planner's order, :func:`plan_steps`).

    Each substitution replaces the first ``move`` blocks of the first step by twice as many narrower blocks, which
    share those blocks' span of host layers evenly; a block takes the host layer its span starts in.
    """
    # the substitutions, undone from the plan's depths: each left a first step of 2 * move blocks
    moves, ds = [], list(plan.depths)
    while len(ds) > 1:
        moves.append(ds[0] // 2)
        ds = [ds[1] + ds[0] // 2] + ds[2:]
    if ds != [depth] or (plan.num_steps > 1 and plan.depths[0] % 2):
        raise ValueError(f'the plan [{plan}] is not a substitution of {depth} layers (plan_steps); expected depths '
                         f'that undo to [{depth}]')
    spans = [(Fraction(i), Fraction(i + 1)) for i in range(depth)]
    depths = [depth]
    for move in reversed(moves):
        first, rest = spans[:depths[0]], spans[depths[0]:]
        taken, kept = first[:move], first[move:]
        start, end = taken[0][0], taken[-1][1]
        step = (end - start) / (2 * move)
        new = [(start + k * step, start + (k + 1) * step) for k in range(2 * move)]
        spans = new + kept + rest
        depths = [2 * move, depths[0] - move] + depths[1:]
    return [int(math.floor(a)) for a, _ in spans]


def _smallest_period(values: Sequence[Any]) -> int:
    n = len(values)
    return next(p for p in range(1, n + 1) if all(values[i] == values[i % p] for i in range(n)))


def extend_per_layer(values: Sequence[Any], host_layer: List[int]) -> List[Any]:
    p = _smallest_period(values)
    if 2 * p <= len(values):
        return [values[i % p] for i in range(len(host_layer))]
    return [values[j] for j in host_layer]
