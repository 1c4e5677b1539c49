"""A Llama-style causal language model and its Step by Step version, inside Hugging Face transformers.

Step by Step Network (StepsNet), arXiv:2511.14329, Section 4 (the macro design) applied to the decoder of today's
language models. The block is transformers' own ``LlamaDecoderLayer`` (RMSNorm, rotary positions, grouped-query
attention, SwiGLU, no biases); the trunk is the :class:`stepsnet.steps.Steps` of those blocks that
:func:`stepsnet.steps.plan_steps` derives with the pattern of the GPT models (``d/2 x D, d/sqrt2 x D/2, d x D/2``),
so the residual model is the same code with a one-step plan and, with that plan, loads a ``LlamaForCausalLM``'s
weights unchanged (same parameter names).

What a step of width ``w`` gets (the twin rule; ``H``, ``KV``, ``I`` and ``d`` are the baseline's heads, key/value
heads, SwiGLU width and width):

* heads from the planner (``H / sqrt2`` per substitution, a divisor of the width); widths are the multiples of 8 the
  heads divide, or of 16, 32, 64 when 8 leaves a step with an odd head width (rotary positions rotate pairs);
* key/value heads ``h * KV / H`` when that is whole (the baseline's query/key-value group ratio), otherwise the
  divisor of ``h`` nearest to it (the larger on a tie);
* SwiGLU width ``I`` at the full width, and Llama's ``multiple_of`` rule below it: ``I * w / d`` rounded up to a
  multiple of ``mlp_multiple_of``;
* rotary frequencies of its own head width (``rope_parameters`` shared).

:class:`StepsLlamaConfig` is a ``LlamaConfig`` with the plan's fields. ``num_hidden_layers`` counts the decoder blocks
the model builds (what caches and tools expect); ``base_num_hidden_layers`` keeps the baseline's ``D``. The
training task (``stepsnet train-lm``) sees both kinds through :class:`CausalLM`: ``llama_*`` names build
transformers' ``LlamaForCausalLM``, ``steps_llama_*`` names the :class:`StepsLlamaForCausalLM` twin.
"""
from __future__ import annotations

import math
import os
from typing import Any, Dict, List, Optional, Tuple, Union

import torch
import torch.nn as nn
from huggingface_hub.dataclasses import strict
from transformers import GenerationMixin, LlamaConfig, LlamaForCausalLM, PretrainedConfig, PreTrainedModel
from transformers.cache_utils import Cache, DynamicCache
from transformers.masking_utils import create_causal_mask
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast
from transformers.models.llama.modeling_llama import LlamaDecoderLayer, LlamaRMSNorm, LlamaRotaryEmbedding

from stepsnet.models.steps_gpt import GPT, LM_CONFIGS, check_token_ids, next_token_loss
from stepsnet.steps import StepPlan, Steps, plan_steps

__all__ = [
    'StepsLlamaConfig', 'StepsLlamaModel', 'StepsLlamaForCausalLM', 'StepsDecoderLayer', 'steps_llama_twin_config',
    'step_kv_heads', 'step_intermediate_size', 'CausalLM', 'LLAMA_CONFIGS', 'llama_config', 'create_llama_lm',
    'list_llamas',
]

# steps fields of StepsLlamaConfig that a plain LlamaConfig does not have
STEPS_FIELDS = ('num_steps', 'steps_move', 'base_num_hidden_layers', 'mlp_multiple_of', 'qkv_bias')


def step_kv_heads(heads: int, base_heads: int, base_kv_heads: int) -> int:
    """Key/value heads of a step with ``heads`` query heads: the baseline's group ratio where it divides."""
    target = heads * base_kv_heads / base_heads
    divisors = [d for d in range(1, heads + 1) if heads % d == 0]
    return min(divisors, key=lambda d: (abs(d - target), -d))


def step_intermediate_size(width: int, hidden_size: int, intermediate_size: int, multiple_of: int) -> int:
    """SwiGLU width of a step: the baseline's at its width, else its ratio rounded up to ``multiple_of`` (Llama)."""
    if width == hidden_size:
        return intermediate_size
    return multiple_of * math.ceil(intermediate_size * width / hidden_size / multiple_of - 1e-9)


@strict
class StepsLlamaConfig(LlamaConfig):
    r"""A ``LlamaConfig`` whose trunk is a Step by Step plan.

    Args:
        num_steps: Steps of the trunk; 1 is the plain Llama decoder.
        steps_move: Blocks moved per substitution; None means ``base_num_hidden_layers // 2``.
        base_num_hidden_layers: The baseline's block count ``D``; None takes ``num_hidden_layers`` (which is then
            set to the trunk's block count, ``D + (num_steps - 1) * steps_move``).
        mlp_multiple_of: SwiGLU widths of the narrower steps are multiples of this.
        qkv_bias: Biases on the query, key and value projections only (Qwen2's attention).
    """
    model_type = 'steps_llama'

    num_steps: int = 1
    steps_move: int | None = None
    base_num_hidden_layers: int | None = None
    mlp_multiple_of: int = 16
    qkv_bias: bool = False

    def __post_init__(self, **kwargs):
        if self.head_dim is not None and self.head_dim * self.num_attention_heads != self.hidden_size:
            raise ValueError(f'StepsLlamaConfig: head_dim={self.head_dim} x {self.num_attention_heads} heads is not '
                             f'hidden_size={self.hidden_size}; expected head_dim = hidden_size / heads')
        given = None
        if self.base_num_hidden_layers is None:
            self.base_num_hidden_layers = self.num_hidden_layers
        else:
            given = self.num_hidden_layers
        self.num_hidden_layers = self.plan().num_blocks
        if given is not None and given != self.num_hidden_layers:
            raise ValueError(f'StepsLlamaConfig: num_hidden_layers={given} but the plan [{self.plan()}] of '
                             f'base_num_hidden_layers={self.base_num_hidden_layers} has '
                             f'{self.num_hidden_layers} blocks')
        super().__post_init__(**kwargs)

    @property
    def block_size(self) -> int:
        """Longest context (``max_position_embeddings``), the name the training task reads."""
        return self.max_position_embeddings

    @property
    def move(self) -> int:
        return self.steps_move if self.steps_move is not None else max(1, self.base_num_hidden_layers // 2)

    def plan(self) -> StepPlan:
        """The trunk's plan, with the planner's heads; widths keep every step's head width even (rotary pairs)."""
        for multiple_of in (8, 16, 32, 64):
            plan = plan_steps(self.hidden_size, self.base_num_hidden_layers, self.num_steps, self.move,
                              heads=self.num_attention_heads, multiple_of=multiple_of)
            if all((w // h) % 2 == 0 for w, h in zip(plan.widths, plan.heads)):
                return plan
        raise ValueError(f'no plan of {self.num_steps} steps for width {self.hidden_size} with '
                         f'{self.num_attention_heads} heads gives every step an even head width')

    def step_config(self, width: int) -> LlamaConfig:
        """The ``LlamaConfig`` of the blocks of the step at ``width``."""
        heads = self.plan().heads_for(width)
        kv = step_kv_heads(heads, self.num_attention_heads, self.num_key_value_heads)
        return LlamaConfig(
            vocab_size=self.vocab_size, hidden_size=width, num_hidden_layers=1, num_attention_heads=heads,
            num_key_value_heads=kv, head_dim=width // heads,
            intermediate_size=step_intermediate_size(width, self.hidden_size, self.intermediate_size,
                                                     self.mlp_multiple_of),
            hidden_act=self.hidden_act, max_position_embeddings=self.max_position_embeddings,
            initializer_range=self.initializer_range, rms_norm_eps=self.rms_norm_eps,
            rope_parameters=dict(self.rope_parameters), attention_bias=self.attention_bias,
            attention_dropout=self.attention_dropout, mlp_bias=self.mlp_bias)

    def llama_config(self) -> LlamaConfig:
        """The plain ``LlamaConfig`` of the baseline (one-step plans only)."""
        if self.num_steps != 1 or self.qkv_bias:
            raise ValueError(f'a LlamaConfig describes the one-step trunk without q/k/v biases; this config has '
                             f'num_steps={self.num_steps}, qkv_bias={self.qkv_bias}')
        # not auto_map: a Llama folder that named the Steps classes would load as a Steps model with remote code
        drop = STEPS_FIELDS + ('model_type', 'architectures', 'auto_map')
        return LlamaConfig.from_dict({k: v for k, v in self.to_dict().items() if k not in drop})

    def save_pretrained(self, save_directory: Union[str, os.PathLike], push_to_hub: bool = False,
                        **kwargs: Any) -> None:
        """transformers' ``save_pretrained``, plus the Hub's remote-code entries, so no prior import is needed.

        ``config.json`` gets an ``auto_map`` (AutoConfig, AutoModel, AutoModelForCausalLM -> the Steps classes) and
        the folder a ``steps_llama.py`` that imports them from the installed stepsnet (:mod:`stepsnet.hf.remote_code`),
        so ``AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)`` loads the folder in a process that
        never imported stepsnet: transformers does not know ``model_type='steps_llama'`` by itself. The model's
        ``save_pretrained`` calls this. The config object is left as it was.
        """
        from stepsnet.hf.saving import AUTO_MAP, write_remote_code  # the transformers-facing side of the package

        had_map, old_map = 'auto_map' in self.__dict__, self.__dict__.get('auto_map')
        self.auto_map = {**(old_map or {}), **AUTO_MAP}
        try:
            super().save_pretrained(save_directory, push_to_hub=push_to_hub, **kwargs)
        finally:
            if had_map:
                self.auto_map = old_map
            else:
                del self.auto_map
        # written after transformers' save: for a class registered as remote code (transformers registers every
        # class it loads that way), that save copies this whole module here under the same name
        write_remote_code(save_directory)


def steps_llama_twin_config(config: PretrainedConfig, num_steps: int = 3, steps_move: Optional[int] = None,
                            **overrides: Any) -> StepsLlamaConfig:
    """The Steps-Llama twin of a Llama-family config (``LlamaConfig``, ``MistralConfig``, ``Qwen2Config``, ...).

    The twin keeps the vocabulary, width, heads, SwiGLU width, norms, rotary settings, tying and biases of
    ``config`` and replaces the trunk by a ``num_steps`` plan (``num_steps=1``: the same model) with this module's
    rule (the planner's heads, so a narrower step may have another head width). Qwen2's query/key/value biases are
    kept (``qkv_bias``); a sliding window (Mistral) is not: the twin attends to the whole context.

    The twin of any other decoder architecture, with the host's own layers and the head width kept, is
    :func:`stepsnet.hf.steps_twin_config` (which also takes these three families).

    Raises:
        ValueError: A config without the Llama fields, or whose head width times heads is not its width.
    """
    need = ('vocab_size', 'hidden_size', 'intermediate_size', 'num_hidden_layers', 'num_attention_heads')
    missing = [k for k in need if getattr(config, k, None) is None]
    if missing:
        raise ValueError(f'{type(config).__name__} lacks {missing}; expected a Llama-family decoder config')
    d = config.to_dict()
    for key in ('model_type', 'architectures', 'transformers_version', 'sliding_window', 'use_sliding_window',
                'max_window_layers', 'layer_types', 'auto_map', 'num_hidden_layers', 'base_num_hidden_layers'):
        d.pop(key, None)
    base = getattr(config, 'base_num_hidden_layers', None) or config.num_hidden_layers
    d.update(num_steps=num_steps, steps_move=steps_move, num_hidden_layers=base,
             qkv_bias=bool(getattr(config, 'qkv_bias', config.model_type == 'qwen2')))
    d.update(overrides)
    return StepsLlamaConfig.from_dict(d)


# ----------------------------------------------------------------------------------------------------------------
# The model


class _Context:
    """What every block of one forward pass shares: the mask, the rotary tables per head width, the cache.

    :class:`Steps` calls a block with the hidden states alone, so the model puts the rest here before running the
    trunk; each block reads it when called and binds it then, so the layer's own checkpointing (transformers'
    ``gradient_checkpointing_enable``) recomputes with the same tensors. It is kept until the next forward pass, so
    the trunk's step checkpointing (:func:`stepsnet.steps.set_step_checkpointing`) works in a forward-backward loop.
    """

    def __init__(self):
        self.kwargs: Dict[str, Any] = {}
        self.rope: Dict[int, Tuple[torch.Tensor, torch.Tensor]] = {}


class StepsDecoderLayer(LlamaDecoderLayer):
    """transformers' ``LlamaDecoderLayer`` at one step's width, called by :class:`Steps` with the hidden states only."""

    def __init__(self, config: LlamaConfig, layer_idx: int, context: _Context, qkv_bias: bool = False):
        super().__init__(config, layer_idx)
        if qkv_bias:  # Qwen2's attention: biases on q, k and v only
            for name in ('q_proj', 'k_proj', 'v_proj'):
                old = getattr(self.self_attn, name)
                setattr(self.self_attn, name, nn.Linear(old.in_features, old.out_features, bias=True))
        self.head_dim = self.self_attn.head_dim
        self._context = context  # a plain attribute: shared, not a submodule

    def __call__(self, hidden_states: torch.Tensor) -> torch.Tensor:
        ctx = self._context
        return super().__call__(hidden_states, position_embeddings=ctx.rope[self.head_dim], **ctx.kwargs)


class StepsLlamaPreTrainedModel(PreTrainedModel):
    config: StepsLlamaConfig
    config_class = StepsLlamaConfig
    base_model_prefix = 'model'
    supports_gradient_checkpointing = True
    _no_split_modules = ['StepsDecoderLayer']
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True


class StepsLlamaModel(StepsLlamaPreTrainedModel):
    """Embedding, the Steps trunk of decoder layers, final RMSNorm (``LlamaModel``'s parameter names).

    ``output_hidden_states=True`` returns ``num_hidden_layers + 1`` tensors, all ``(batch, tokens, hidden_size)`` as
    transformers' outputs promise (tools stack them or apply the final norm and head to each): the embeddings, then
    the trunk's state after each decoder layer, the last one normed (Llama's convention). A layer of a narrower step
    runs at its step's width ``w``: its state is its output (the first ``w`` channels) followed by the embedding
    channels no step has taken in yet, the way the trunk concatenates them (:meth:`Steps.forward_intermediates`).
    ``model.config.plan().block_widths()[i]`` is the width of layer ``i``, i.e. of ``hidden_states[i + 1]``'s own part.
    """

    def __init__(self, config: StepsLlamaConfig):
        super().__init__(config)
        self.plan = config.plan()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, config.pad_token_id)
        self._context = _Context()
        step_configs = {w: config.step_config(w) for w in self.plan.widths}

        def make_block(width: int, index: int) -> nn.Module:
            block = StepsDecoderLayer(step_configs[width], index, self._context, config.qkv_bias)
            block.self_attn.config = config  # the attention implementation is the model's (set_attn_implementation)
            return block

        self.layers = Steps(self.plan, make_block, dim=-1, channels=config.hidden_size)
        self.norm = LlamaRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        # one rotary table per head width (the narrower steps may have their own)
        self.rotary_embs = nn.ModuleDict({
            str(c.head_dim): LlamaRotaryEmbedding(c) for c in
            {step_configs[w].head_dim: step_configs[w] for w in self.plan.widths}.values()})
        self.gradient_checkpointing = False
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.embed_tokens

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.embed_tokens = value

    def forward(
            self,
            input_ids: Optional[torch.LongTensor] = None,
            attention_mask: Optional[torch.Tensor] = None,
            position_ids: Optional[torch.LongTensor] = None,
            cache: Optional[Cache] = None,
            inputs_embeds: Optional[torch.Tensor] = None,
            use_cache: Optional[bool] = None,
            **kwargs: Any,
    ) -> BaseModelOutputWithPast:
        cache = kwargs.pop('past_key_values', cache)  # the name before transformers 5.40
        output_hidden_states = kwargs.pop('output_hidden_states', None)
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError('StepsLlamaModel: give exactly one of input_ids and inputs_embeds')
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)
        if use_cache is None:
            use_cache = self.config.use_cache and not self.training
        if use_cache and cache is None:
            cache = DynamicCache()  # layers appear as the blocks write them: widths and kv heads differ per step
        if position_ids is None:
            past = cache.get_seq_length() if cache is not None else 0
            position_ids = (torch.arange(inputs_embeds.shape[1], device=inputs_embeds.device) + past).unsqueeze(0)
        mask = create_causal_mask(config=self.config, inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                                  cache=cache, position_ids=position_ids)
        ctx = self._context
        ctx.rope = {int(hd): rope(inputs_embeds, position_ids) for hd, rope in self.rotary_embs.items()}
        ctx.kwargs = dict(attention_mask=mask, position_ids=position_ids, cache=cache, use_cache=use_cache, **kwargs)
        wanted = self._hidden_state_indices(output_hidden_states)
        if wanted is None:
            hidden = self.norm(self.layers(inputs_embeds))
            return BaseModelOutputWithPast(last_hidden_state=hidden, cache=cache if use_cache else None)
        # hidden_states[i] is the state after layer i - 1; the last one is the normed output instead, as Llama's
        after = sorted(i for i in wanted if i > 0)
        last, states = self.layers.forward_intermediates(inputs_embeds, [i - 1 for i in after])
        hidden = self.norm(last)
        by_index = {0: inputs_embeds, **dict(zip(after, states)), len(self.layers): hidden}
        hidden_states = tuple(by_index[i] if i in wanted else None for i in range(len(self.layers) + 1))
        return BaseModelOutputWithPast(last_hidden_state=hidden, cache=cache if use_cache else None,
                                       hidden_states=hidden_states)

    def _hidden_state_indices(self, output_hidden_states: Union[bool, int, List[int], None]) -> Optional[set]:
        """The indices of ``hidden_states`` to return (None: no hidden states), as transformers reads the argument.

        ``True`` is all of them; an index or a list of indices (negative ones count from the end) selects some, and
        the others are None in the tuple, which keeps its length (transformers' ``capture_outputs`` convention).
        """
        if not output_hidden_states:
            return None
        n = len(self.layers) + 1
        if output_hidden_states is True:
            return set(range(n))
        selected = [output_hidden_states] if isinstance(output_hidden_states, int) else list(output_hidden_states)
        return {i % n for i in selected if -n <= i < n}


class StepsLlamaForCausalLM(StepsLlamaPreTrainedModel, GenerationMixin):
    """The Steps-Llama language model: ``LlamaForCausalLM``'s interface (``labels=`` loss, cache, ``generate``)."""
    _tied_weights_keys = {'lm_head.weight': 'model.embed_tokens.weight'}

    def __init__(self, config: StepsLlamaConfig):
        super().__init__(config)
        self.model = StepsLlamaModel(config)
        self.vocab_size = config.vocab_size
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def forward(
            self,
            input_ids: Optional[torch.LongTensor] = None,
            attention_mask: Optional[torch.Tensor] = None,
            position_ids: Optional[torch.LongTensor] = None,
            cache: Optional[Cache] = None,
            inputs_embeds: Optional[torch.Tensor] = None,
            labels: Optional[torch.LongTensor] = None,
            use_cache: Optional[bool] = None,
            logits_to_keep: Union[int, torch.Tensor] = 0,
            **kwargs: Any,
    ) -> CausalLMOutputWithPast:
        loss_kwargs = {k: kwargs.pop(k) for k in ('num_items_in_batch', 'ignore_index') if k in kwargs}
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, cache=cache,
                         inputs_embeds=inputs_embeds, use_cache=use_cache, **kwargs)
        hidden = out.last_hidden_state
        keep = slice(-logits_to_keep, None) if isinstance(logits_to_keep, int) else logits_to_keep
        logits = self.lm_head(hidden[:, keep, :])
        loss = None
        if labels is not None:
            loss = self.loss_function(logits=logits, labels=labels, vocab_size=self.config.vocab_size, **loss_kwargs)
        return CausalLMOutputWithPast(loss=loss, logits=logits, cache=out.cache, hidden_states=out.hidden_states)


# ----------------------------------------------------------------------------------------------------------------
# The training task's view


def _llama_block_macs(cfg: LlamaConfig, context: int) -> float:
    w, hd = cfg.hidden_size, cfg.head_dim
    linear = w * cfg.num_attention_heads * hd * 2 + 2 * w * cfg.num_key_value_heads * hd + 3 * w * cfg.intermediate_size
    return float(linear + 2 * context * cfg.num_attention_heads * hd)


class CausalLM(nn.Module):
    """A transformers causal LM seen as the training task sees a :class:`stepsnet.models.steps_gpt.GPT`.

    ``forward(idx, targets=None)`` returns ``(logits, loss)`` (every position with targets, the last without;
    the loss is the GPT's, so both kinds of model are scored by the same line), plus ``plan``, ``num_blocks``,
    ``num_params``, ``flops_per_token``, ``set_fused_attn``, ``set_grad_checkpointing``, ``no_weight_decay`` and
    ``generate``.

    Args:
        config: The :class:`StepsLlamaConfig`.
        transformers_baseline: Build transformers' own ``LlamaForCausalLM`` (one-step configs only) instead of
            :class:`StepsLlamaForCausalLM`.
    """

    def __init__(self, config: StepsLlamaConfig, transformers_baseline: bool = False):
        super().__init__()
        self.config = config
        self.plan: StepPlan = config.plan()
        self.hf = LlamaForCausalLM(config.llama_config()) if transformers_baseline else StepsLlamaForCausalLM(config)

    num_blocks = GPT.num_blocks
    num_params = GPT.num_params

    def embedding_weights(self) -> Tuple[nn.Parameter, ...]:
        """The token embedding and the output head (one tensor when they are tied)."""
        return self.hf.get_input_embeddings().weight, self.hf.lm_head.weight

    def set_fused_attn(self, enable: bool = True) -> None:
        self.hf.set_attn_implementation('sdpa' if enable else 'eager')

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        if enable:
            self.hf.activation_checkpointing_enable(activation_checkpointing_kwargs={'use_reentrant': False})
        else:
            self.hf.activation_checkpointing_disable()

    no_weight_decay = GPT.no_weight_decay  # every vector (norms, biases) is left out of weight decay

    def forward(
            self,
            idx: torch.Tensor,
            targets: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        check_token_ids(idx, self.config.block_size)
        logits = self.hf(input_ids=idx, use_cache=False, logits_to_keep=0 if targets is not None else 1).logits
        if targets is None:
            return logits, None
        return logits, next_token_loss(logits, targets)

    def flops_per_token(self, context: Optional[int] = None) -> Dict[str, float]:
        """Multiply-adds per token of one forward pass (linear layers, the two attention matmuls, the output head)."""
        T = context or self.config.block_size
        macs = sum(_llama_block_macs(self.config.step_config(w), T) for w in self.plan.block_widths())
        macs += self.config.hidden_size * self.config.vocab_size
        return {'forward_macs': float(macs), 'train_flops': float(6 * macs)}

    generate = GPT.generate  # the GPT's sampling loop: it only calls ``self(ctx)`` and reads ``config.block_size``


# ----------------------------------------------------------------------------------------------------------------
# Named sizes

# The GPT models' shapes (``stepsnet.models.steps_gpt.LM_CONFIGS``) with Llama's block: same width, depth, heads,
# vocabulary and context, SwiGLU 8/3 x width rounded up to a multiple of 16 (Llama's rule), full multi-head attention
# as Llama-2-7B, tied embeddings; the parameter counts then equal the GPT's (Table 4 for small / medium / large).
LLAMA_CONFIGS: Dict[str, Dict[str, Any]] = {}
for _size in ('small', 'medium', 'large', 'cpu', 'tiny'):
    _gpt = LM_CONFIGS[f'gpt_{_size}']
    _args = dict(vocab_size=_gpt['vocab_size'], max_position_embeddings=_gpt['block_size'],
                 num_hidden_layers=_gpt['n_layer'], num_attention_heads=_gpt['n_head'], hidden_size=_gpt['n_embd'],
                 intermediate_size=16 * math.ceil(8 * _gpt['n_embd'] / 3 / 16),
                 tie_word_embeddings=True, rms_norm_eps=1e-5, bos_token_id=None, eos_token_id=None)
    LLAMA_CONFIGS[f'llama_{_size}'] = dict(_args, num_steps=1)
    LLAMA_CONFIGS[f'steps_llama_{_size}'] = dict(_args, num_steps=3)


def list_llamas() -> List[str]:
    return list(LLAMA_CONFIGS)


def llama_config(name: str, **overrides: Any) -> StepsLlamaConfig:
    """The :class:`StepsLlamaConfig` of a named model (``llama_cpu``, ``steps_llama_small``, ...) with overrides."""
    if name not in LLAMA_CONFIGS:
        raise ValueError(f'unknown Llama model {name!r}; expected one of {list_llamas()}')
    args = dict(LLAMA_CONFIGS[name])
    args.update({k: v for k, v in overrides.items() if v is not None})
    if name.startswith('llama_') and args.get('num_steps', 1) != 1:
        raise ValueError(f'{name} is transformers\' LlamaForCausalLM (one step); got num_steps={args["num_steps"]}')
    return StepsLlamaConfig.from_dict(args)


def create_llama_lm(name: str, **overrides: Any) -> CausalLM:
    """The training task's model: transformers' ``LlamaForCausalLM`` for ``llama_*``, the Steps twin otherwise."""
    return CausalLM(llama_config(name, **overrides), transformers_baseline=name.startswith('llama_'))
