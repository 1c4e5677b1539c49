"""The Steps twin of a decoder-only transformers model, built from the host's own classes.

Step by Step Network (StepsNet), arXiv:2511.14329, is "a versatile macro design applicable to various models": it
changes the trunk (which blocks run at which width, Section 4), not the block. This module applies it to any
decoder-only architecture of transformers whose decoder layers are built from its config, with one mechanism:

* the twin's config class is a subclass of the host's config class (``Qwen3Config`` -> ``StepsTwinQwen3Config``,
  ``model_type='steps_twin_qwen3'``) with the plan's fields, so every field the host's code reads is there;
* the twin's model classes are subclasses of the host's own ``*ForCausalLM`` and base model: embedding (and its
  scaling), final norm, rotary embedding, masks (sliding windows, per-layer patterns), cache, attention
  implementation, output head (soft-capping, logit scaling), loss and ``generate`` are the host's code, unchanged;
* the host's decoder-layer list is replaced by a :class:`stepsnet.steps.Steps` trunk of the host's decoder-layer class,
  each layer built from a copy of the config at its step's width (the twin rule below);
* the host's ``forward`` still loops over its layers: during that loop the trunk hands it call recorders, which keep
  the arguments the host gives each layer (its mask, rotary table, cache, ...) and, at the last layer, run the
  Steps trunk with them. So each block gets exactly what the host would give a layer at its position.

The twin rule (a step of width ``w``; ``d``, ``H``, ``KV`` the host's width, heads and key/value heads):

* head width kept (the host's ``head_dim``), heads scaled with the width: ``h = w * H / d``, so the widths are the
  multiples of ``d / H`` nearest ``d / sqrt2^k`` (and the host's rotary tables serve every step);
* key/value heads ``h * KV / H`` where that is whole, else the divisor of ``h`` nearest to it (the larger on a tie);
* every feed-forward width of the family (``intermediate_size``; for mixtures of experts also the experts' and the
  shared expert's) scaled by ``w / d`` and rounded to a multiple of ``intermediate_multiple_of``; experts keep their
  count and routing;
* per-layer lists (``layer_types``: sliding-window patterns; ``no_rope_layers``) continue their period over the
  twin's blocks; a list with no period shorter than half its length, and per-layer index lists (``mlp_only_layers``),
  go to each block from the host layer it substitutes (the planner's substitution order).

A one-step plan is the host model: same parameter names, same forward pass (tested for exact logits). The families
covered and the rule's arithmetic are :mod:`stepsnet.hf.decoder_families` (re-exported here).
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import os
import re
import warnings
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import transformers
from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, PretrainedConfig
from transformers.models.auto.configuration_auto import CONFIG_MAPPING
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES, MODEL_MAPPING_NAMES

from stepsnet.hf.decoder_families import (
    DECODERS,
    NOT_COVERED,
    DecoderFamily,
    extend_per_layer,
    step_feedforward_size,
    substituted_host_layers,
    twin_plan,
)
from stepsnet.models.steps_llama import step_kv_heads
from stepsnet.steps import StepPlan, Steps
from stepsnet.utils.meta import on_meta

__all__ = [
    'DecoderFamily', 'DECODERS', 'NOT_COVERED', 'TwinClasses', 'twin_classes', 'steps_twin_config', 'twin_plan',
    'step_feedforward_size', 'matched_feedforward', 'substituted_host_layers', 'is_steps_twin', 'REMOTE_CODE_FILE',
]

REMOTE_CODE_FILE = 'steps_decoder.py'  # the name transformers' custom_object_save gives this module's classes
PER_LAYER_FIELDS = ('layer_types', 'mlp_layer_types', 'no_rope_layers')  # one entry per decoder layer
STEPS_FIELDS = ('num_steps', 'steps_move', 'base_num_hidden_layers', 'intermediate_multiple_of', 'step_feedforward')


# ----------------------------------------------------------------------------------------------------------------
# Config


class _TwinConfigMixin:
    """The plan's fields and rule on top of a host config class (see :func:`twin_classes`)."""

    host_model_type: str = ''
    family: DecoderFamily = None

    def __post_init__(self, **kwargs):
        given = self.num_hidden_layers
        fresh = self.base_num_hidden_layers is None
        if fresh:
            self.base_num_hidden_layers = given
        plan = self.plan()
        if fresh:
            host_layer = substituted_host_layers(plan, given)
            for name in PER_LAYER_FIELDS:
                values = getattr(self, name, None)
                if isinstance(values, (list, tuple)) and len(values) == given:
                    setattr(self, name, extend_per_layer(list(values), host_layer))
            for name in self.family.layer_index_fields:
                values = getattr(self, name, None)
                if values:
                    setattr(self, name, [j for j, h in enumerate(host_layer) if h in set(values)])
            self.num_hidden_layers = plan.num_blocks
        elif given != plan.num_blocks:
            raise ValueError(f'{type(self).__name__}: num_hidden_layers={given} but the plan [{plan}] of '
                             f'base_num_hidden_layers={self.base_num_hidden_layers} has {plan.num_blocks} blocks')
        super().__post_init__(**kwargs)

    def plan(self) -> StepPlan:
        """The trunk's plan: widths, blocks and heads of every step (the twin rule)."""
        return twin_plan(self.hidden_size, self.num_attention_heads, self.base_num_hidden_layers, self.num_steps,
                         self.steps_move)

    def step_config(self, width: int) -> PretrainedConfig:
        """The config a decoder layer of the step at ``width`` is built from (``self`` at the full width).

        A shallow copy with the width, heads, key/value heads and feed-forward widths of the step; everything else
        (head width, norms, rotary settings, layer types, multipliers) is the host's. It reads the attention and
        experts implementations of ``self``, so ``set_attn_implementation`` on the model reaches every layer.
        """
        if width == self.hidden_size:
            return self
        heads = self.plan().heads_for(width)
        fields = dict(hidden_size=width, num_attention_heads=heads)
        kv = getattr(self, 'num_key_value_heads', None)
        if kv is not None:
            fields['num_key_value_heads'] = step_kv_heads(heads, self.num_attention_heads, kv)
        stored = (self.step_feedforward or {}).get(str(width), {})
        for name in self.family.feedforward_fields:
            size = getattr(self, name, None)
            if size:
                fields[name] = stored.get(name) or step_feedforward_size(size, width, self.hidden_size,
                                                                         self.intermediate_multiple_of)
        step = copy.copy(self)
        step.__dict__['_steps_parent'] = self
        for name, value in fields.items():
            _set_field(step, name, value)  # no validation: the fields are a layer's, not a model's
        return step

    # a step's config is a copy: it reads these two from the model's config, which set_attn_implementation updates
    @property
    def _attn_implementation(self):
        parent = self.__dict__.get('_steps_parent')
        return parent._attn_implementation if parent is not None else self._attn_implementation_internal

    @_attn_implementation.setter
    def _attn_implementation(self, value):
        PretrainedConfig._attn_implementation.fset(self, value)

    @property
    def _experts_implementation(self):
        parent = self.__dict__.get('_steps_parent')
        return parent._experts_implementation if parent is not None else self._experts_implementation_internal

    @_experts_implementation.setter
    def _experts_implementation(self, value):
        PretrainedConfig._experts_implementation.fset(self, value)

    def host_config(self) -> PretrainedConfig:
        """The host's config of the same model (one-step plans only): what ``from_pretrained`` of the host reads."""
        if self.num_steps != 1:
            raise ValueError(f'a {self.host_model_type} config describes the one-step trunk; this twin has '
                             f'num_steps={self.num_steps}')
        drop = STEPS_FIELDS + ('model_type', 'architectures', 'auto_map', 'transformers_version')
        return CONFIG_MAPPING[self.host_model_type].from_dict(
            {k: v for k, v in self.to_dict().items() if k not in drop})

    def save_pretrained(self, save_directory: Union[str, os.PathLike], push_to_hub: bool = False,
                        **kwargs: Any) -> None:
        """transformers' ``save_pretrained`` plus the Hub's remote-code entries (see :mod:`stepsnet.hf.saving`).

        ``config.json`` gets an ``auto_map`` naming this twin's classes in ``steps_decoder.py``, a copy of
        :mod:`stepsnet.hf.remote_code`, so ``AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)``
        loads the folder in a process that never imported stepsnet. The config object is left as it was.
        """
        from stepsnet.hf.saving import write_remote_code

        classes = twin_classes(self.host_model_type)
        module = REMOTE_CODE_FILE[:-len('.py')]
        auto_map = {'AutoConfig': f'{module}.{classes.config.__name__}',
                    'AutoModel': f'{module}.{classes.model.__name__}',
                    'AutoModelForCausalLM': f'{module}.{classes.causal_lm.__name__}'}
        had_map, old_map = 'auto_map' in self.__dict__, self.__dict__.get('auto_map')
        self.auto_map = {**(old_map or {}), **auto_map}
        try:
            super().save_pretrained(save_directory, push_to_hub=push_to_hub, **kwargs)
        finally:
            if had_map:
                self.auto_map = old_map
            else:
                del self.auto_map
        write_remote_code(save_directory, REMOTE_CODE_FILE)


# ----------------------------------------------------------------------------------------------------------------
# Model


class _Context:
    """What the trunk of one model shares: the host's per-layer call arguments, recorded during its forward pass.

    A training pass keeps them until the next forward pass, so recomputation in the backward pass (transformers'
    layer checkpointing, :func:`stepsnet.steps.set_step_checkpointing`) sees the same arguments; any other pass lets
    them go when it ends (they hold the cache and the masks).
    """

    def __init__(self):
        self.calls: List[Optional[Tuple[tuple, dict]]] = []
        self.recording = False
        self.trunk_input: Optional[torch.Tensor] = None


class _StepsBlock:
    """Mixin for the host's decoder-layer class: called with the hidden states alone, it adds the host's arguments."""

    def __call__(self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if not args and not kwargs:
            args, kwargs = self._steps_context.calls[self._steps_index]
        out = super().__call__(hidden_states, *args, **kwargs)
        if not isinstance(out, torch.Tensor):
            raise TypeError(f'{type(self).__name__} returned {type(out).__name__}; the Steps trunk expects the layer '
                            f'to return the hidden states tensor (transformers >= 5 decoder layers do)')
        return out


class _LayerCall:
    """What the host's layer loop sees for layer ``index`` during a forward pass: it records, the last one runs.

    Attribute reads go to the real layer, so a loop that reads, say, ``decoder_layer.attention_type`` still works.
    """

    def __init__(self, trunk: StepsTrunk, index: int):
        self._trunk, self._index = trunk, index

    def __getattr__(self, name: str) -> Any:
        return getattr(self._trunk[self._index], name)

    def __call__(self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        ctx = self._trunk._steps_context
        if self._index and hidden_states is not ctx.trunk_input:
            raise TypeError(f'the host model passed decoder layer {self._index} something other than what layer '
                            f'{self._index - 1} returned (it unpacks a tuple, as layers before transformers 5 '
                            f'returned); the Steps trunk needs a loop `hidden_states = layer(hidden_states, ...)`')
        trunk = self._trunk
        if trunk.training and torch.is_grad_enabled() and trunk.checkpointed(self._index):
            # recomputed in the backward pass: it must not write the cache twice (transformers' own checkpointing
            # of a layer drops the cache the same way)
            kwargs = {k: (None if k in ('cache', 'past_key_values', 'layer_past') else v) for k, v in kwargs.items()}
            if kwargs.get('use_cache'):
                kwargs['use_cache'] = False
        ctx.calls[self._index] = (args, kwargs)
        ctx.trunk_input = hidden_states
        if self._index + 1 < len(self._trunk):
            return hidden_states  # the host carries the trunk's input on to the next call
        missing = [i for i, c in enumerate(ctx.calls) if c is None]
        if missing:
            raise RuntimeError(f'the host model did not call decoder layers {missing}; the Steps trunk runs all of '
                               f'them at the last one')
        ctx.recording = False
        return self._trunk(hidden_states)


class StepsTrunk(Steps):
    """The :class:`Steps` trunk of host decoder layers, standing where the host keeps its list of layers.

    Indexing by an integer gives a real layer, as with the host's ``ModuleList``; iterating or slicing during the
    twin's forward pass gives :class:`_LayerCall` recorders, so the host's own loop drives the trunk.
    """

    def __init__(self, plan: StepPlan, make_block, channels: int, context: _Context):
        super().__init__(plan, make_block, dim=-1, channels=channels)
        self._steps_context = context

    def _layer_calls(self) -> List[_LayerCall]:
        return [_LayerCall(self, i) for i in range(len(self))]

    def __iter__(self) -> Iterator[nn.Module]:
        if self._steps_context.recording:
            return iter(self._layer_calls())
        return super().__iter__()

    def __getitem__(self, index):
        if isinstance(index, slice) and self._steps_context.recording:
            return self._layer_calls()[index]
        return super().__getitem__(index)


def _set_field(config: PretrainedConfig, name: str, value: Any) -> None:
    """Set a config field without the validation of a model's config (``n_embd`` for ``hidden_size`` where mapped)."""
    object.__setattr__(config, config.attribute_map.get(name, name), value)


@contextlib.contextmanager
def _without_layers(config: PretrainedConfig):
    """Let the host's ``__init__`` build everything but its decoder layers (the trunk replaces them)."""
    n = config.num_hidden_layers
    _set_field(config, 'num_hidden_layers', 0)
    try:
        yield
    finally:
        _set_field(config, 'num_hidden_layers', n)


def _register_capture(model: nn.Module) -> None:
    """transformers keys the outputs a model records (hidden states, router logits) by the model's class."""
    try:
        from transformers.utils.output_capturing import _CAN_RECORD_REGISTRY
    except ImportError:  # pragma: no cover - other transformers versions
        return
    _CAN_RECORD_REGISTRY[model] = type(model)._can_record_outputs


class _TwinModelMixin:
    """The host's base model with its decoder layers replaced by a :class:`StepsTrunk`."""

    _steps_host_class: type = None  # the host's base model class
    _steps_layer_class: type = None  # the host's decoder-layer class
    _steps_layers_attr: str = 'layers'

    def __init__(self, config):
        with _without_layers(config):
            super().__init__(config)
        self._steps_build_trunk()
        self.post_init()

    def _steps_build_trunk(self) -> None:
        config = self.config
        plan = config.plan()
        ctx = _Context()
        self._steps_context = ctx
        step_configs = {w: config.step_config(w) for w in plan.widths}
        block_class = _block_class(self._steps_layer_class)

        def make_block(width: int, index: int) -> nn.Module:
            block = block_class(step_configs[width], index)
            block._steps_context, block._steps_index = ctx, index
            return block

        names = [n for n, m in self.named_children() if isinstance(m, nn.ModuleList) and not len(m)]
        if len(names) != 1:
            raise TypeError(f'{type(self).__name__} built without its decoder layers has empty ModuleLists {names}; '
                            f'expected exactly one, the list the decoder layers go in')
        self._steps_layers_attr = names[0]
        setattr(self, self._steps_layers_attr, StepsTrunk(plan, make_block, config.hidden_size, ctx))
        _register_capture(self)

    def forward(self, *args: Any, **kwargs: Any):
        ctx = self._steps_context
        ctx.calls = [None] * len(getattr(self, self._steps_layers_attr))
        ctx.recording = True
        try:
            out = super().forward(*args, **kwargs)
        finally:
            ctx.recording = False
        hidden_states = getattr(out, 'hidden_states', None)
        if hidden_states is not None:
            out.hidden_states = self._steps_full_width(hidden_states)
        if not (self.training and torch.is_grad_enabled()):
            # nothing recomputes this pass: let the masks, the cache and the input go
            ctx.calls, ctx.trunk_input = [], None
        return out

    def _steps_full_width(self, hidden_states: Tuple[Optional[torch.Tensor], ...]) -> Tuple:
        """Every hidden state at the full width, as transformers' outputs promise and as the trunk concatenates.

        transformers records each layer's output, at its step's width; a layer of width ``w`` gets the trunk
        input's channels from ``w`` on (the chunks no step has taken in yet) appended, the first entry is the trunk's
        input and the last the normed output (the host's convention).
        """
        x = self._steps_context.trunk_input
        trunk = getattr(self, self._steps_layers_attr)
        widths = trunk.plan.block_widths()
        out = list(hidden_states)
        if out and out[0] is not None:
            out[0] = x
        for i in range(1, len(out) - 1):
            h = out[i]
            if h is not None and h.shape[-1] < x.shape[-1]:
                out[i] = torch.cat([h, x[..., widths[i - 1]:]], dim=-1)
        return tuple(out)


class _TwinCausalLMMixin:
    """The host's ``*ForCausalLM`` whose base model is the twin's (:class:`_TwinModelMixin`)."""

    _steps_model_class: type = None

    def __init__(self, config):
        with _without_layers(config):
            super().__init__(config)
        expected = self._steps_model_class._steps_host_class
        bases = [m for m in self.children() if type(m) is expected]
        if len(bases) != 1:
            raise TypeError(f'{type(self).__name__}: the host built {len(bases)} {expected.__name__} base models as '
                            f'children; expected one')
        base = bases[0]
        base.__class__ = self._steps_model_class  # the same object, the twin's forward and trunk
        base._steps_build_trunk()
        self.post_init()


_BLOCK_CLASSES: Dict[type, type] = {}


def _block_class(layer_class: type) -> type:
    """The host's decoder-layer class with :class:`_StepsBlock` in front, one per host class."""
    if layer_class not in _BLOCK_CLASSES:
        _BLOCK_CLASSES[layer_class] = type(f'Steps{layer_class.__name__}', (_StepsBlock, layer_class),
                                           {'__module__': __name__, '__doc__': layer_class.__doc__})
    return _BLOCK_CLASSES[layer_class]


# ----------------------------------------------------------------------------------------------------------------
# The classes of a host type


@dataclasses.dataclass(frozen=True)
class TwinClasses:
    """The three classes of the twin of one host ``model_type`` (registered with transformers' auto classes)."""
    config: type
    model: type
    causal_lm: type


_TWINS: Dict[str, TwinClasses] = {}


def _host_layer_class(base_class: type) -> type:
    """The host's decoder-layer class: the one whose outputs transformers records as hidden states."""
    spec = (getattr(base_class, '_can_record_outputs', None) or {}).get('hidden_states')
    target = getattr(spec, 'target_class', spec)
    if isinstance(target, type) and issubclass(target, nn.Module):
        return target
    module = __import__(base_class.__module__, fromlist=['_'])
    for name in getattr(base_class, '_no_split_modules', None) or []:
        candidate = getattr(module, name, None)
        if isinstance(candidate, type) and issubclass(candidate, nn.Module):
            return candidate
    raise ValueError(f'{base_class.__name__} names no decoder-layer class (_can_record_outputs["hidden_states"] or '
                     f'_no_split_modules); expected a transformers >= 5 decoder-only model')


def _share_weight_conversions(pairs: Sequence[Tuple[str, str]]) -> None:
    """Give the twin the host's checkpoint format: transformers renames and converts weights on load and save.

    The conversions are keyed by ``model_type`` and by class name (``pairs``: the host's key, the twin's). Mixtral's
    and the Qwen MoEs' files keep one tensor per expert (``experts.0.w1.weight``), which transformers 5 fuses into one
    per layer on load and splits again on save; GPT-NeoX's file names its head ``embed_out``, its module ``lm_head``.
    With the host's conversions the twin reads a host checkpoint with ``from_pretrained`` and writes the host's format.
    """
    try:
        from transformers.conversion_mapping import (
            get_checkpoint_conversion_mapping,
            register_checkpoint_conversion_mapping,
        )
    except ImportError:  # pragma: no cover - other transformers versions
        return
    for host_key, twin_key in pairs:
        mapping = get_checkpoint_conversion_mapping(host_key)
        if mapping:
            register_checkpoint_conversion_mapping(twin_key, mapping, overwrite=True)


_FEEDFORWARD_NAME = re.compile(r'intermediate|^n_inner$|^ffn_dim$|^ffn_hidden_size$')


def _twin_name(name: str) -> str:
    return 'StepsTwin' + name


def twin_classes(model_type: str) -> TwinClasses:
    """The twin's config, base model and causal-LM classes for a host ``model_type``, made and registered once.

    Raises:
        ValueError: transformers has no causal LM or base model for ``model_type``, or its decoder-layer class or
            layer list cannot be found (named in the message).
    """
    if model_type in _TWINS:
        return _TWINS[model_type]
    if model_type in NOT_COVERED:
        raise ValueError(f'{model_type!r} has no Steps twin: {NOT_COVERED[model_type]}')
    if model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES or model_type not in MODEL_MAPPING_NAMES:
        raise ValueError(f'transformers has no causal LM and base model for model_type={model_type!r}; expected a '
                         f'decoder-only type, e.g. one of {sorted(DECODERS)}')
    host_config = CONFIG_MAPPING[model_type]
    host_lm = getattr(transformers, MODEL_FOR_CAUSAL_LM_MAPPING_NAMES[model_type])
    host_model = getattr(transformers, MODEL_MAPPING_NAMES[model_type])
    if isinstance(host_lm, (tuple, list)) or isinstance(host_model, (tuple, list)):  # pragma: no cover
        raise ValueError(f'{model_type!r} maps to several classes; expected one causal LM and one base model')
    if getattr(host_config, 'sub_configs_defaults', None):
        raise ValueError(f'{host_config.__name__} is a composite config ({sorted(host_config.sub_configs_defaults)}); '
                         f'expected the config of a decoder-only language model')
    layer_class = _host_layer_class(host_model)
    family = DECODERS.get(model_type)
    if family is None:
        fields = tuple(f.name for f in dataclasses.fields(host_config) if _FEEDFORWARD_NAME.search(f.name))
        family = DecoderFamily(model_type, host_lm.__name__.replace('ForCausalLM', ''),
                               'found by discovery, not in the tested registry', feedforward_fields=fields)
        warnings.warn(f'model_type {model_type!r} is not in stepsnet.hf.DECODERS, the families the Steps twin is '
                      f'tested on; its twin scales the feed-forward fields {list(fields)}: check that the one-step '
                      f'twin gives the host\'s logits before relying on it', stacklevel=3)
    twin_type = f'steps_twin_{model_type}'

    config_cls = strict(type(_twin_name(host_config.__name__), (_TwinConfigMixin, host_config), {
        '__module__': __name__,
        '__doc__': f'A ``{host_config.__name__}`` whose trunk is a Step by Step plan (:mod:`{__name__}`).',
        '__annotations__': {'num_steps': int, 'steps_move': Optional[int], 'base_num_hidden_layers': Optional[int],
                            'intermediate_multiple_of': int, 'step_feedforward': Optional[dict]},
        'num_steps': 1, 'steps_move': None, 'base_num_hidden_layers': None, 'intermediate_multiple_of': 16,
        'step_feedforward': None,
        'model_type': twin_type, 'host_model_type': model_type, 'family': family,
    }))
    pretrained = {'__module__': __name__, 'config_class': config_cls, '_no_split_modules': [
        _block_class(layer_class).__name__]}
    model_cls = type(_twin_name(host_model.__name__), (_TwinModelMixin, host_model), {
        **pretrained, '__doc__': f'``{host_model.__name__}`` with a Steps trunk of its ``{layer_class.__name__}``.',
        '_steps_host_class': host_model, '_steps_layer_class': layer_class})
    lm_cls = type(_twin_name(host_lm.__name__), (_TwinCausalLMMixin, host_lm), {
        **pretrained, '__doc__': f'``{host_lm.__name__}`` whose base model is ``{model_cls.__name__}``.',
        '_steps_model_class': model_cls})
    classes = TwinClasses(config_cls, model_cls, lm_cls)
    for cls in classes.__dict__.values():
        globals()[cls.__name__] = cls  # importable by name: remote code, pickling by reference
    AutoConfig.register(twin_type, config_cls, exist_ok=True)
    AutoModel.register(config_cls, model_cls, exist_ok=True)
    AutoModelForCausalLM.register(config_cls, lm_cls, exist_ok=True)
    _share_weight_conversions([(model_type, twin_type), (host_model.__name__, model_cls.__name__),
                               (host_lm.__name__, lm_cls.__name__)])
    _TWINS[model_type] = classes
    return classes


def is_steps_twin(config: PretrainedConfig) -> bool:
    """Whether ``config`` is the config of a Steps twin (of any host type)."""
    return isinstance(config, _TwinConfigMixin)


def steps_twin_config(config: PretrainedConfig, num_steps: int = 3, steps_move: Optional[int] = None,
                      feedforward: str = 'matched', **overrides: Any) -> PretrainedConfig:
    """The Steps twin of a decoder-only model's config, for ``AutoModelForCausalLM.from_config``.

    The twin keeps every field of ``config`` (vocabulary, width, heads, head width, norms, rotary and sliding-window
    settings, multipliers, soft-capping, experts, tying) and replaces the trunk by a ``num_steps`` plan of the host's
    own decoder layers (``num_steps=1``: the same model, whose weights it loads unchanged).

    Args:
        config: The host's config, e.g. a ``Qwen3Config`` or ``Gemma2Config``.
        num_steps: Steps of the trunk.
        steps_move: Layers moved per substitution; None means half the host's layers.
        feedforward: ``'matched'`` (default): the narrower steps' feed-forward widths sized so that each block has
            the parameters of a host block scaled by the plan's compute model, absorbing the rounding of the widths
            to whole heads (:func:`matched_feedforward`; stored in the config's ``step_feedforward``), so that the
            twin keeps the host's parameter count (within 0.3% for every published shape of the registry), as a
            twin must for the paper's comparison; ``'scaled'``: every feed-forward width scaled with the step's
            width and nothing else (the plain rule, up to a few percent off where whole heads round the widths).
        **overrides: Fields of the twin's config to set (``intermediate_multiple_of``, ...).

    Raises:
        ValueError: ``config`` is already a twin, its type has no twin (the message says why), or ``feedforward``
            is neither ``'scaled'`` nor ``'matched'``.
    """
    if feedforward not in ('scaled', 'matched'):
        raise ValueError(f"feedforward={feedforward!r}; expected 'scaled' or 'matched'")
    if is_steps_twin(config) or getattr(config, 'model_type', '').startswith('steps_'):
        raise ValueError(f'{type(config).__name__} is already a Steps model config; expected the host\'s config')
    classes = twin_classes(config.model_type)
    d = config.to_dict()
    for key in ('model_type', 'architectures', 'transformers_version', 'auto_map', '_name_or_path'):
        d.pop(key, None)
    d.update(num_steps=num_steps, steps_move=steps_move)
    d.update(overrides)
    if getattr(config, '_attn_implementation', None):
        d['attn_implementation'] = config._attn_implementation
    twin = classes.config(**d)
    if feedforward == 'matched':
        twin.step_feedforward = matched_feedforward(twin)
    return twin


def _layer_params(layer_class: type, config: PretrainedConfig, index: int) -> int:
    with on_meta(), warnings.catch_warnings():
        warnings.filterwarnings('ignore', message='Initializing zero-element tensors')  # the empty feed-forward
        return sum(p.numel() for p in layer_class(config, index).parameters())


def matched_feedforward(config: PretrainedConfig) -> Dict[str, Dict[str, int]]:
    """Feed-forward widths of the narrower steps that give each block the plan's share of a host block's parameters.

    The plan's compute model (:func:`stepsnet.steps.plan_steps`) gives a block at ``d / sqrt2^k`` a ``2^-k`` share of
    a full-width block, and so the trunk the host's parameters; whole heads round the widths away from
    ``d / sqrt2^k``. This sizes every feed-forward width of a step (all of them by one factor: experts, shared
    expert) so that its first block has ``2^-k`` times the host's mean layer parameters, the layers built on the
    meta device. Returns ``{str(width): {field: size}}`` for the config's ``step_feedforward``.
    """
    plan = config.plan()
    layer_class = twin_classes(config.host_model_type).model._steps_layer_class
    depth = config.base_num_hidden_layers
    host = sum(_layer_params(layer_class, config, i) for i in range(depth)) / depth
    names = [n for n in config.family.feedforward_fields if getattr(config, n, None)]
    m = config.intermediate_multiple_of
    sizes, first = {}, 0
    for s, (width, blocks) in enumerate(zip(plan.widths, plan.depths)):
        level = plan.num_steps - 1 - s
        if level and blocks and names:
            scaled = config.step_config(width)
            empty = copy.copy(scaled)
            for n in names:
                _set_field(empty, n, 0)
            p1, p0 = _layer_params(layer_class, scaled, first), _layer_params(layer_class, empty, first)
            factor = (host / 2 ** level - p0) / (p1 - p0) if p1 > p0 else 1.0
            sizes[str(width)] = {n: max(m, m * int(math.floor(getattr(scaled, n) * factor / m + 0.5))) for n in names}
        first += blocks
    return sizes


def __getattr__(name: str) -> type:
    """``StepsTwin<Host>Config`` / ``...Model`` / ``...ForCausalLM`` of any host type, made on first use."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    if name.startswith('StepsTwin'):
        host = name[len('StepsTwin'):]
        for model_type, lm_name in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.items():
            if host in (CONFIG_MAPPING_NAMES.get(model_type), lm_name, MODEL_MAPPING_NAMES.get(model_type)):
                twin_classes(model_type)
                return globals()[name]
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


for _model_type in DECODERS:
    twin_classes(_model_type)
