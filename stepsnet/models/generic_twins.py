"""Steps twins of timm families whose trunk (or stages) are stacks of residual blocks of one width.

Step by Step Network (StepsNet), arXiv:2511.14329. :mod:`stepsnet.models.twins` converts four families with one model
class each (ResNet, ViT, Swin, ConvNeXt). This module converts many more with one mechanism instead of a class per
family, and with nothing in timm modified:

1. **Read the blocks' construction arguments.** The family's timm builder (``_create_eva``, ...) runs as it is, with
   the model class replaced, in a private copy of the builder's globals, by a constructor that runs the class's own
   ``__init__`` in a private copy of *its* globals where the block class (and, for hierarchical models, the stage
   class on the way to it) is a recorder: it builds the real block and keeps the arguments it was given. The model
   is thus timm's own (same class, same code, same random draws) and every block's arguments are known.
2. **Rebuild the blocks at the step widths.** Each trunk (``blocks`` of an isotropic model, ``stages[i].blocks`` of a
   hierarchical one) is planned by :func:`stepsnet.steps.plan_steps` and every block of the plan is the same timm
   block class built from a baseline block's arguments, with only the family's width arguments changed: the width,
   the head count where the block has heads (scaled by the ViT rule, or fixed head size where the family ties it:
   rotary embeddings, MetaFormer attention), and nothing else, so hidden sizes follow the block's own ratios.
   Stochastic depth is re-spread linearly over the deeper trunk, between the rates of its first and last baseline
   blocks.
3. **Replace the block sequence by a Steps trunk** (:class:`TimmSteps`, a :class:`stepsnet.steps.Steps`), then
   re-run the family's own weight init on it.

timm's forward code is kept. Where it calls the sequence (``self.blocks(x)``) the trunk runs its split / concat;
where it loops over it (EVA's ``for blk in self.blocks: x = blk(x, rope=...)``, ``forward_intermediates``,
``checkpoint_seq``), :class:`TimmSteps` yields per-block views that take and return the full-width state: block
``i`` of step ``s`` runs on the first ``C_s`` channels and the untouched chunks are concatenated back, which is the
Steps recursion written per block, so every timm loop (and the keyword arguments it passes) works unchanged.

The rule for the number of steps is the paper's as :mod:`stepsnet.models.twins` applies it: an isotropic trunk gets
3 steps and moves ``D // 2`` blocks (the DeiT pattern); a hierarchical model converts its last two stages with
``1 + 2 log2(C / C_ref)`` steps, ``C_ref`` being the width of the stage before them, moving 3 and 1 blocks (the
ConvNeXt rule). ``num_steps`` / ``steps_move`` override it (one value, or one per trunk).
"""
import copy
import inspect
import math
import re
import types
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from timm.models import beit, cait, eva, inception_next, mambaout, metaformer, mlp_mixer, resolve_pretrained_cfg

from stepsnet.models._builder import _no_weights_error, _weight_source
from stepsnet.steps import StepPlan, Steps, plan_steps

__all__ = ['TimmSteps', 'LeadTimmSteps', 'TrunkFamily', 'BASE_FAMILIES']


# ---------------------------------------------------------------------------------------------------------------
# the trunk


class _BlockView:
    """Block ``block`` of a step of width ``width``, applied to a full-width state (first ``width`` channels).

    Not a module (it is never registered); attribute access goes to the block, so timm code that walks
    ``self.blocks`` (``layer.attn.proj`` in a rescaling init) reaches the real block.
    """

    def __init__(self, block: nn.Module, width: int, channels: int, dim: int):
        self.__dict__.update(block=block, width=width, channels=channels, dim=dim)

    def __call__(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if self.width == self.channels:
            return self.block(x, *args, **kwargs)
        head, tail = torch.split(x, [self.width, self.channels - self.width], dim=self.dim)
        return torch.cat([self.block(head, *args, **kwargs), tail], dim=self.dim)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.block, name)

    def __repr__(self) -> str:
        return f'_BlockView({type(self.block).__name__}, width={self.width} of {self.channels})'


class TimmSteps(Steps):
    """A :class:`Steps` trunk that timm's loops over ``self.blocks`` run correctly.

    Calling it runs the plan (split, steps, concat). Iterating it yields one view per block that maps the full-width
    state to the full-width state (the block on its step's leading channels, the rest passed through), so timm's
    ``for blk in self.blocks: x = blk(x, **kw)``, ``checkpoint_seq`` and ``forward_intermediates`` compute the same
    function. Indexing with an int returns the block itself (as :class:`Steps` does); a prefix slice
    (``blocks[:k]``, timm's ``prune_intermediate_layers``) returns a trunk truncated to ``k`` blocks that shares them.
    """

    def _views(self) -> List[_BlockView]:
        widths = self.plan.block_widths()
        return [_BlockView(b, w, self.channels, self.dim) for b, w in zip(self.children(), widths)]

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        return iter(self._views())

    def __getitem__(self, index: Union[int, slice]) -> Any:
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if start != 0 or step != 1:
                return self._views()[index]
            trunk = copy.copy(self)
            trunk._modules = type(self._modules)(self._modules)
            trunk.truncate(stop)
            return trunk
        return super().__getitem__(index)


class LeadTimmSteps(TimmSteps):
    """A :class:`TimmSteps` trunk behind blocks that stay as they are (:attr:`TrunkFamily.lead`).

    A CNN stage often begins with a strided or widening block; the paper keeps it and converts the blocks after it
    (Steps-ResNet). The container keeps the baseline's child names (``0, 1, ..`` or RegNet's ``b1, b2, ..``: the
    kept blocks first, then the trunk's), so a one-step trunk has the baseline's parameter names. The kept blocks are
    registered after the trunk's blocks, because :class:`Steps` runs its first ``num_blocks`` children, and run
    first here. Iterating yields the kept blocks, then the trunk's views; ``forward_intermediates`` indices count the
    trunk's blocks.

    Args:
        lead: The kept blocks, in order.
        names: Child names of the kept blocks and then the trunk's blocks (:func:`_block_names`).
        trunk: The Steps trunk (its blocks are moved here).
    """

    def __init__(self, lead: Sequence[nn.Module], names: Sequence[str], trunk: TimmSteps):
        blocks = list(trunk.children())
        super().__init__(trunk.plan, lambda width, index: blocks[index], dim=trunk.dim, channels=trunk.channels)
        if len(names) != len(lead) + len(blocks):
            raise ValueError(f'{len(names)} names {list(names)} for {len(lead)} kept and {len(blocks)} trunk blocks; '
                             'expected one name per block')
        self._modules.clear()
        for name, block in list(zip(names[len(lead):], blocks)) + list(zip(names, lead)):
            self.add_module(name, block)
        self.num_lead = len(lead)

    def _lead(self) -> List[nn.Module]:
        return list(self._modules.values())[self.plan.num_blocks:]

    def _views(self) -> List[Any]:
        return [_BlockView(b, self.channels, self.channels, self.dim) for b in self._lead()] + super()._views()

    def __len__(self) -> int:
        return self.num_lead + self.plan.num_blocks

    def __getitem__(self, index: Union[int, slice]) -> Any:
        if isinstance(index, slice):
            return self._views()[index]
        return (self._lead() + list(self._modules.values())[:self.plan.num_blocks])[index]

    def _run(self, x: torch.Tensor, indices: List[int], stop_early: bool) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        for block in self._lead():
            x = block(x)
        return super()._run(x, indices, stop_early)

    def truncate(self, num_blocks: int) -> None:
        """Keep the kept blocks and the trunk's first ``num_blocks`` blocks."""
        plan = self.plan.truncated(num_blocks)
        for name in list(self._modules)[num_blocks:self.plan.num_blocks]:
            del self._modules[name]
        self._set_plan(plan)


def _block_names(names: Sequence[str], count: int) -> List[str]:
    """``count`` child names that continue a container's (``0, 1, ..`` or ``b1, b2, ..``: one prefix, counting up)."""
    parts = [re.fullmatch(r'(\D*)(\d+)', n) for n in names]
    if not parts or not all(parts) or len({p.group(1) for p in parts}) > 1:
        raise ValueError(f'block names {list(names)} are not a prefix and a count; expected 0, 1, .. or b1, b2, ..')
    prefix, start = parts[0].group(1), int(parts[0].group(2))
    if [int(p.group(2)) for p in parts] != list(range(start, start + len(parts))):
        raise ValueError(f'block names {list(names)} do not count up by one; expected 0, 1, .. or b1, b2, ..')
    return [f'{prefix}{start + i}' for i in range(count)]


# ---------------------------------------------------------------------------------------------------------------
# reading construction arguments


@dataclass
class _Record:
    module: nn.Module
    cls: Callable[..., nn.Module]
    kwargs: Dict[str, Any]


def _stage_rule(
        widths: Sequence[int],
        depths: Sequence[int],
        reference: int,
        moves: Mapping[int, int],
) -> Dict[str, Tuple[int, ...]]:
    """num_steps / steps_move of a hierarchical model: stage ``s`` in ``moves`` gets ``1 + 2 log2(C_s / C_ref)`` steps
    and moves ``min(D_s, K_s)`` blocks per substitution; a stage without blocks to move stays as it is."""
    num_steps, steps_move = [1] * len(depths), [0] * len(depths)
    for stage, k in moves.items():
        steps = 1 + round(2 * math.log2(widths[stage] / widths[reference]))
        if depths[stage] >= 1 and steps > 1:
            num_steps[stage], steps_move[stage] = steps, min(depths[stage], k)
    return dict(num_steps=tuple(num_steps), steps_move=tuple(steps_move))


def _bound_kwargs(cls: Callable[..., Any], args: Tuple[Any, ...], kwargs: Mapping[str, Any]) -> Dict[str, Any]:
    """The call's arguments by name (positional ones named, ``**kwargs`` flattened), to rebuild it by keyword."""
    sig = inspect.signature(cls)
    bound = sig.bind(*args, **kwargs).arguments
    out: Dict[str, Any] = {}
    for name, value in bound.items():
        kind = sig.parameters[name].kind
        if kind is inspect.Parameter.VAR_KEYWORD:
            out.update(value)
        elif kind is inspect.Parameter.VAR_POSITIONAL:
            raise ValueError(f'{cls.__name__} takes *{name}; expected blocks whose arguments have names')
        else:
            out[name] = value
    return out


def _recorder(cls: Callable[..., nn.Module], sink: List[_Record]) -> Callable[..., nn.Module]:
    def build(*args: Any, **kwargs: Any) -> nn.Module:
        module = cls(*args, **kwargs)
        sink.append(_Record(module, cls, _bound_kwargs(cls, args, kwargs)))
        return module

    build.__name__ = build.__qualname__ = getattr(cls, '__name__', 'block')
    # plain class attributes that the builder reads from the block class (ResNet's ``block_fn.expansion``)
    build.__dict__.update({k: v for k, v in getattr(cls, '__dict__', {}).items()
                           if not k.startswith('_') and isinstance(v, (int, float, str))})
    return build


def _probed(cls: type, swaps: Mapping[str, Any], sink: List[_Record]) -> Callable[..., nn.Module]:
    """A constructor of ``cls`` whose ``__init__`` sees the names in ``swaps`` replaced (timm is left untouched).

    ``swaps`` maps a global name used in ``cls.__init__`` to None (record that block class) or to a nested mapping
    (probe that class in turn: a stage whose ``__init__`` builds the blocks).
    """
    init = cls.__init__
    scope = dict(init.__globals__)
    for name, sub in swaps.items():
        if name not in scope:
            raise ValueError(f'{cls.__name__}.__init__ has no global {name!r}; expected the block or stage class')
        scope[name] = _recorder(scope[name], sink) if sub is None else _probed(scope[name], sub, sink)
    probe = types.FunctionType(init.__code__, scope, init.__name__, init.__defaults__, init.__closure__)
    probe.__kwdefaults__ = init.__kwdefaults__

    def construct(*args: Any, **kwargs: Any) -> nn.Module:
        obj = cls.__new__(cls)
        probe(obj, *args, **kwargs)
        return obj

    construct.__name__ = construct.__qualname__ = cls.__name__
    return construct


# ---------------------------------------------------------------------------------------------------------------
# families


@dataclass(frozen=True)
class _Site:
    """A trunk of a built model: the block container at ``path``, its blocks' arguments, and its channel axis."""
    path: str
    records: Tuple[_Record, ...]
    dim: int
    lead: Tuple[nn.Module, ...] = ()  # blocks in front of the trunk that stay as they are (TrunkFamily.lead)
    names: Tuple[str, ...] = ()  # the container's child names (lead blocks first)


@dataclass(frozen=True)
class TrunkFamily:
    """How one timm family's blocks are found, refused, resized and initialised.

    Attributes:
        name: Family name in tables and errors.
        module: The timm module that defines it.
        builder: The module's private builder that its entrypoints call (``_create_eva``).
        model_cls: Name of the model class the builder builds.
        swaps: Global names of ``model_cls.__init__`` to record (None) or probe (nested mapping), see :func:`_probed`.
        block_params: Constructor parameters of ``model_cls`` that name the block class (``block_layer``); their
            value is recorded.
        sites: ``sites(model) -> [(container path, channel axis)]`` in forward order.
        isotropic: One trunk at one width (ViT rule) rather than stages (ConvNeXt rule).
        width_key: The block argument that holds its width.
        heads_key: The block argument that holds its head count, for blocks with heads.
        head_dim: ``head_dim(model, kwargs) -> int or None``: a head size the family fixes (rotary embeddings,
            MetaFormer attention); widths are then multiples of it and heads follow.
        refuse: ``refuse(model, kwargs) -> reason or None``: why a configuration cannot be twinned.
        init: ``init(model, trunk)``: the family's weight init, applied to a new trunk.
        period: Baseline block arguments repeat with this period (2 for alternating shifted windows).
        block_kwargs: ``block_kwargs(model, baseline, plan, index, kwargs) -> kwargs``: the arguments that block
            ``index`` of a new trunk is built with, given the baseline blocks' arguments in order and those made by
            the mechanism (a baseline block's, with the step's width, heads and drop path): for arguments that
            depend on a block's place in the trunk (a norm that ends the stage). Default: ``kwargs`` as they are.
        lead: Leading blocks of every trunk that stay as they are, in front of the Steps trunk
            (:class:`LeadTimmSteps`): a CNN stage's strided or widening first block, which the paper keeps (Steps-ResNet
            converts the blocks after it). They need not be recorded blocks (StarNet's downsampling conv).
        multiple_of: ``multiple_of(model, kwargs) -> int or None``: step widths are the nearest multiples of it (a
            group width, a group norm's groups); None floors them as the paper's ResNet tables do. Default 8.
        steps_rule: ``steps_rule(model, paths, depths) -> (num_steps, moves)`` for every site (``depths`` count the
            blocks after the lead, 0 for a site without any): the family's own rule instead of the default one, which
            sees only the sites that have blocks (a stage whose only block is its first one shifts it).
    """
    name: str
    module: types.ModuleType
    builder: str
    model_cls: str
    sites: Callable[[nn.Module], List[Tuple[str, int]]]
    init: Callable[[nn.Module, nn.Module], None]
    swaps: Mapping[str, Any] = field(default_factory=dict)
    block_params: Tuple[str, ...] = ()
    isotropic: bool = True
    width_key: str = 'dim'
    heads_key: Optional[str] = None
    head_dim: Callable[[nn.Module, Mapping[str, Any]], Optional[int]] = lambda model, kw: None
    refuse: Callable[[nn.Module, Mapping[str, Any]], Optional[str]] = lambda model, kw: None
    period: int = 1
    block_kwargs: Callable[..., Dict[str, Any]] = lambda model, baseline, plan, index, kw: kw
    lead: int = 0
    multiple_of: Callable[[nn.Module, Mapping[str, Any]], Optional[int]] = lambda model, kw: 8
    steps_rule: Optional[Callable[..., Tuple[Sequence[int], Sequence[int]]]] = None

    @property
    def builders(self) -> Tuple[str, ...]:
        return (self.builder,)

    def rule(self, args: Mapping[str, Any]) -> Dict[str, Any]:
        """Nothing to add to the entrypoint's arguments: the rule is applied to the built trunks (see the module)."""
        return {}

    def create(self, variant: str, pretrained: bool = False, **kwargs: Any) -> nn.Module:
        """Build the twin with the family's own timm builder (features_only, pretrained config and all)."""
        return _create(self, variant, pretrained, **kwargs)


def _dp_key(kwargs: Mapping[str, Any]) -> Optional[str]:
    return next((k for k in ('drop_path', 'drop_path_rate', 'drop_path_prob') if k in kwargs), None)


def _spread(first: Any, last: Any, n: int) -> List[float]:
    # a block may take its DropPath module rather than its rate (timm's ResNet blocks)
    first, last = float(getattr(first, 'drop_prob', first) or 0.), float(getattr(last, 'drop_prob', last) or 0.)
    return [first + (last - first) * i / max(1, n - 1) for i in range(n)]


def _as_tuple(value: Any, n: int, what: str) -> Tuple[int, ...]:
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ValueError(f'{what}={tuple(value)} has {len(value)} entries; expected one per trunk ({n})')
        return tuple(int(v) for v in value)
    return (int(value),) * n


def _default_steps(family: TrunkFamily, widths: Sequence[int], depths: Sequence[int]) -> Tuple[List[int], List[int]]:
    """The paper's rule (see the module docstring) for each site."""
    if family.isotropic:
        return [3] * len(depths), [max(1, d // 2) for d in depths]
    n = len(depths)
    if n < 3:
        return [1] * n, [0] * n
    rule = _stage_rule(widths, depths, reference=n - 3, moves={n - 2: 3, n - 1: 1})
    return list(rule['num_steps']), list(rule['steps_move'])


def _plan(family: TrunkFamily, model: nn.Module, site: _Site, num_steps: int, move: int) -> StepPlan:
    kw = site.records[0].kwargs
    width, depth = int(kw[family.width_key]), len(site.records)
    head_dim = family.head_dim(model, kw)
    heads = kw.get(family.heads_key) if family.heads_key else None
    try:
        if head_dim is not None:
            if width % head_dim:
                raise ValueError(f'width {width} is not a multiple of the head size {head_dim}')
            plan = plan_steps(width, depth, num_steps, move, multiple_of=head_dim)
            if heads is not None:
                plan = StepPlan(plan.widths, plan.depths, tuple(w // head_dim for w in plan.widths))
            return plan
        return plan_steps(width, depth, num_steps, move, heads=heads, multiple_of=family.multiple_of(model, kw))
    except ValueError as e:
        raise ValueError(f'{family.name} trunk {site.path} ({width} x{depth}, {num_steps} steps): {e}') from e


def _trunk(family: TrunkFamily, plan: StepPlan, site: _Site, model: Optional[nn.Module] = None) -> TimmSteps:
    records = site.records
    key = _dp_key(records[0].kwargs)
    rates = _spread(records[0].kwargs.get(key), records[-1].kwargs.get(key), plan.num_blocks) if key else None
    heads = plan.block_heads() if plan.heads is not None else None

    def make_block(width: int, index: int) -> nn.Module:
        src = records[index % family.period if index % family.period < len(records) else 0]
        kw = dict(src.kwargs, **{family.width_key: width})
        if heads is not None:
            kw[family.heads_key] = heads[index]
        if key:
            kw[key] = rates[index]
        return src.cls(**family.block_kwargs(model, [r.kwargs for r in records], plan, index, kw))

    return TimmSteps(plan, make_block, dim=site.dim, channels=plan.channels)


def _convert(family: TrunkFamily, model: nn.Module, records: List[_Record], num_steps: Any, steps_move: Any) -> None:
    """Replace each trunk of ``model`` by its Steps trunk (in place) and record the plans in ``model.plans``."""
    by_id = {id(r.module): r for r in records}
    sites = []
    for path, dim in family.sites(model):
        container = model.get_submodule(path)
        named = list(container.named_children()) if family.lead else []
        blocks = [b for _, b in named[family.lead:]] if family.lead else list(container)
        missing = [i for i, b in enumerate(blocks) if id(b) not in by_id]
        if missing:
            raise ValueError(f'{family.name}: blocks {missing} of {path} were not built by the recorded class; '
                             'expected one block class per trunk')
        recs = tuple(by_id[id(b)] for b in blocks)
        if len({r.cls for r in recs}) > 1 or len({r.kwargs.get(family.width_key) for r in recs}) > 1:
            raise ValueError(f'{family.name}: {path} mixes block classes or widths; expected one residual block '
                             'type at one width')
        for r in recs:
            reason = family.refuse(model, r.kwargs)
            if reason:
                raise ValueError(f'{family.name}: {reason}')
        sites.append(_Site(path, recs, dim, tuple(b for _, b in named[:family.lead]), tuple(n for n, _ in named)))
    if family.steps_rule is not None:
        steps, moves = family.steps_rule(model, [s.path for s in sites], [len(s.records) for s in sites])
        kept = [i for i, s in enumerate(sites) if s.records]
        sites, steps, moves = [sites[i] for i in kept], [steps[i] for i in kept], [moves[i] for i in kept]
    else:
        sites = [s for s in sites if s.records]
        widths = [int(s.records[0].kwargs[family.width_key]) for s in sites]
        steps, moves = _default_steps(family, widths, [len(s.records) for s in sites])
    if num_steps is not None:
        steps = list(_as_tuple(num_steps, len(sites), 'num_steps'))
    if steps_move is not None:
        moves = list(_as_tuple(steps_move, len(sites), 'steps_move'))
    model.plans = {}
    for site, s, k in zip(sites, steps, moves):
        if s < 1:
            raise ValueError(f'num_steps for {site.path} is {s}; expected >= 1')
        plan = _plan(family, model, site, s, k)
        trunk = _trunk(family, plan, site, model)
        family.init(model, trunk)
        if family.lead:
            trunk = LeadTimmSteps(site.lead, _block_names(site.names, len(site.lead) + plan.num_blocks), trunk)
        parent, _, name = site.path.rpartition('.')
        setattr(model.get_submodule(parent) if parent else model, name, trunk)
        model.plans[site.path] = plan
    if family.isotropic and sites and isinstance(getattr(model, 'feature_info', None), list) and model.feature_info:
        path, template = sites[0].path, model.feature_info[0]
        model.feature_info = [dict(template, module=f'{path}.{i}') for i in range(len(model.get_submodule(path)))]


def _create(family: TrunkFamily, variant: str, pretrained: bool = False, **kwargs: Any) -> nn.Module:
    num_steps, steps_move = kwargs.pop('num_steps', None), kwargs.pop('steps_move', None)
    if pretrained:
        cfg = resolve_pretrained_cfg(variant, kwargs.get('pretrained_cfg'), kwargs.get('pretrained_cfg_overlay'))
        if _weight_source(cfg.to_dict()) is None:
            raise _no_weights_error(variant)
    cls = getattr(family.module, family.model_cls)
    records: List[_Record] = []

    def construct(**model_kwargs: Any) -> nn.Module:
        sig = inspect.signature(cls)
        for p in family.block_params:
            model_kwargs[p] = _recorder(model_kwargs.get(p, sig.parameters[p].default), records)
        model = _probed(cls, family.swaps, records)(**model_kwargs)
        _convert(family, model, records, num_steps, steps_move)
        return model

    construct.__name__ = construct.__qualname__ = cls.__name__
    builder = getattr(family.module, family.builder)
    scope = dict(builder.__globals__, **{family.model_cls: construct})
    probe = types.FunctionType(builder.__code__, scope, builder.__name__, builder.__defaults__, builder.__closure__)
    probe.__kwdefaults__ = builder.__kwdefaults__
    return probe(variant, pretrained, **kwargs)


# ---------------------------------------------------------------------------------------------------------------
# the families


def _blocks(model: nn.Module) -> List[Tuple[str, int]]:
    return [('blocks', -1)]


def _stage_blocks(dim: Union[int, Callable[[nn.Module], int]], attr: str = 'stages') -> Callable:
    def sites(model: nn.Module) -> List[Tuple[str, int]]:
        stages = getattr(model, attr)
        return [(f'{attr}.{i}.blocks', dim(s) if callable(dim) else dim) for i, s in enumerate(stages)]
    return sites


def _apply_method(model: nn.Module, trunk: nn.Module, **kwargs: Any) -> None:
    trunk.apply(partial(model._init_weights, **kwargs))


def _vit_like_init(model: nn.Module, trunk: nn.Module) -> None:
    """EVA / BEiT: trunc-normal linears, then the depth rescale of output projections (over the new trunk)."""
    trunk.apply(partial(model._init_weights, needs_reset=False))
    rescale_by_depth(trunk)


def rescale_by_depth(trunk: nn.Module) -> None:
    """The depth rescale of timm's ViT-style inits (BEiT, EVA, ``fix_init``): block ``i``'s attention and MLP output
    projections divided by ``sqrt(2 (i + 1))``, over the blocks of the new trunk in order."""
    with torch.no_grad():
        for layer_id, layer in enumerate(trunk.children()):
            scale = math.sqrt(2.0 * (layer_id + 1))
            layer.attn.proj.weight.div_(scale)
            layer.mlp.fc2.weight.div_(scale)


def _eva_head_dim(model: nn.Module, kw: Mapping[str, Any]) -> Optional[int]:
    # rotary embeddings are built once for the model's head size: every step keeps it
    return int(kw['dim']) // int(kw['num_heads']) if getattr(model, 'rope', None) is not None else None


def _eva_refuse(model: nn.Module, kw: Mapping[str, Any]) -> Optional[str]:
    if getattr(model, 'rope_mixed', False):
        return 'mixed-mode rotary embeddings are learnt per block and head (depth x heads); no step can reuse them'
    if kw.get('num_kv_heads') is not None:
        return f'grouped-query attention ({kw["num_kv_heads"]} kv heads) has no rule for scaling kv heads'
    if kw.get('attn_head_dim') is not None:
        return f'attn_head_dim={kw["attn_head_dim"]} fixes the attention width apart from the block width'
    return None


def _beit_refuse(model: nn.Module, kw: Mapping[str, Any]) -> Optional[str]:
    if getattr(model, 'rel_pos_bias', None) is not None:
        return 'a relative position bias shared by all blocks has the full head count; steps have fewer heads'
    return None


def _mixer_init(model: nn.Module, trunk: nn.Module) -> None:
    from timm.models._manipulate import named_apply
    named_apply(partial(mlp_mixer._init_weights, flax=False), trunk, name='blocks')


def _metaformer_head_dim(model: nn.Module, kw: Mapping[str, Any]) -> Optional[int]:
    mixer = kw.get('token_mixer')
    if isinstance(mixer, type) and issubclass(mixer, metaformer.Attention):
        return inspect.signature(metaformer.Attention).parameters['head_dim'].default
    return None


# the families of this module; stepsnet.models.generic_families adds the others and is the table to read
BASE_FAMILIES: Tuple[TrunkFamily, ...] = (
    TrunkFamily('EVA', eva, '_create_eva', 'Eva', _blocks, _vit_like_init,
                swaps={'EvaBlock': None, 'EvaBlockPostNorm': None}, heads_key='num_heads',
                head_dim=_eva_head_dim, refuse=_eva_refuse),
    TrunkFamily('BEiT', beit, '_create_beit', 'Beit', _blocks, _vit_like_init,
                swaps={'Block': None}, heads_key='num_heads', refuse=_beit_refuse),
    TrunkFamily('CaiT', cait, '_create_cait', 'Cait', _blocks, _apply_method,
                block_params=('block_layers',), heads_key='num_heads'),
    TrunkFamily('MLP-Mixer', mlp_mixer, '_create_mixer', 'MlpMixer', _blocks, _mixer_init,
                block_params=('block_layer',)),
    TrunkFamily('MetaFormer', metaformer, '_create_metaformer', 'MetaFormer',
                _stage_blocks(lambda s: 1 if s.use_nchw else -1), _apply_method,
                swaps={'MetaFormerStage': {'MetaFormerBlock': None}}, isotropic=False,
                head_dim=_metaformer_head_dim),
    TrunkFamily('MambaOut', mambaout, '_create_mambaout', 'MambaOut', _stage_blocks(-1), _apply_method,
                swaps={'MambaOutStage': {'GatedConvBlock': None}}, isotropic=False),
    TrunkFamily('InceptionNeXt', inception_next, '_create_inception_next', 'MetaNeXt', _stage_blocks(1),
                _apply_method, swaps={'MetaNeXtStage': {'MetaNeXtBlock': None}}, isotropic=False),
)
