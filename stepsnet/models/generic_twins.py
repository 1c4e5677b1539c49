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
   MetaFormer attention), and nothing else, so hidden sizes follow the block's own ratios. EVA's rotary table is
   built for the model's head size, so a step with another head size gets its own, built as timm built the model's
   (:func:`_eva_step_ropes`).
   Stochastic depth is re-spread linearly over the deeper trunk, between the rates of its first and last baseline
   blocks. Widths are the nearest multiples of the family's unit to ``C / sqrt(2)^k``; where those leave the twin
   more than :data:`PARAMS_TOLERANCE` off the baseline's parameters, each trunk takes the neighbouring multiples that
   bring it closest to its baseline trunk (:func:`_balanced`; ``balance_widths=False`` keeps the nearest).
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
import inspect
import itertools
import math
import types
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from timm.models import beit, cait, eva, inception_next, mambaout, metaformer, mlp_mixer, resolve_pretrained_cfg

from stepsnet.models._builder import _no_weights_error, _weight_source
from stepsnet.models.timm_trunk import LeadTimmSteps, TimmSteps, _block_names
from stepsnet.steps import StepPlan, plan_steps, step_width, step_width_options
from stepsnet.utils.meta import on_meta

__all__ = ['TimmSteps', 'LeadTimmSteps', 'TrunkFamily', 'BASE_FAMILIES', 'PARAMS_TOLERANCE']

# a twin within this fraction of its baseline's parameters keeps the rule's nearest widths (the parity tables' 0.5%)
PARAMS_TOLERANCE = 0.005


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


def _probed(cls: Any, swaps: Mapping[str, Any], sink: List[_Record]) -> Callable[..., Any]:
    """A constructor of ``cls`` whose ``__init__`` sees the names in ``swaps`` replaced (timm is left untouched).

    ``swaps`` maps a global name used in ``cls.__init__`` to None (record that block class) or to a nested mapping
    (probe that class in turn: a stage whose ``__init__`` builds the blocks). ``cls`` may also be a plain function
    (CSPNet's ``create_csp_stages``, which picks the block class through ``_get_block_fn``): it is called with the
    names replaced in its own globals.
    """
    plain = isinstance(cls, types.FunctionType)
    init = cls if plain else cls.__init__
    scope = dict(init.__globals__)
    for name, sub in swaps.items():
        if name not in scope:
            raise ValueError(f'{cls.__name__}{"" if plain else ".__init__"} has no global {name!r}; expected the '
                             'block or stage class')
        scope[name] = _recorder(scope[name], sink) if sub is None else _probed(scope[name], sub, sink)
    probe = types.FunctionType(init.__code__, scope, init.__name__, init.__defaults__, init.__closure__)
    probe.__kwdefaults__ = init.__kwdefaults__
    if plain:
        return probe

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
        by_baseline_name: The builder looks the configuration up by the model's name (RegNet's
            ``model_cfgs[variant]``): it is called with the baseline's name and the twin's pretrained config.
        adapt: ``adapt(model, trunk, records)``: what a new trunk needs besides its blocks, given every recorded
            call (EVA: a rotary embedding per step whose head size is not the model's).
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
    by_baseline_name: bool = False
    adapt: Optional[Callable[[nn.Module, 'TimmSteps', Sequence[_Record]], None]] = None

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


def _plan(family: TrunkFamily, model: nn.Module, site: _Site, num_steps: int, move: int,
          fewer: bool = False) -> StepPlan:
    """The trunk's plan by the family's rounding. With ``fewer`` (the rule chose ``num_steps``, not the user), a
    rounding coarse enough to give two steps one width (a grouped convolution's group of 80 channels) takes the
    most steps below ``num_steps`` whose widths still increase, rather than refusing."""
    if fewer:
        for steps in range(num_steps, 1, -1):
            try:
                return _plan(family, model, site, steps, move)
            except ValueError as e:
                if 'strictly increasing' not in str(e):
                    raise
        return _plan(family, model, site, num_steps, move)  # no count works: the rule's own error
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


def _options(family: TrunkFamily, model: nn.Module, site: _Site, plan: StepPlan) -> List[List[Tuple[int, Any]]]:
    """Per step of ``plan`` (the rule's), the widths (and heads) the family's rounding allows near the exact width
    ``C / sqrt(2)^k``, nearest first (:func:`stepsnet.steps.step_width_options`); the last step keeps the trunk's."""
    kw = site.records[0].kwargs
    width = int(kw[family.width_key])
    head_dim = family.head_dim(model, kw)
    heads = kw.get(family.heads_key) if family.heads_key else None
    out = []
    for level in range(plan.num_steps - 1, -1, -1):
        if head_dim is not None:
            found = [(w, w // head_dim if heads is not None else None)
                     for w, _ in step_width_options(width, level, None, head_dim)]
        else:
            found = step_width_options(width, level, heads, family.multiple_of(model, kw))
        out.append(found)
    return out


def _trunk_params(family: TrunkFamily, model: nn.Module, site: _Site, plan: StepPlan,
                  cache: Dict[Tuple[Any, ...], int]) -> int:
    """The parameters of the trunk ``plan`` would build at ``site``: one block per distinct set of arguments built on
    the meta device and counted, kept in ``cache``."""
    records, total = site.records, 0
    heads = plan.block_heads() if plan.heads is not None else [None] * plan.num_blocks
    dp = _dp_key(records[0].kwargs)
    for i, (w, h) in enumerate(zip(plan.block_widths(), heads)):
        src = records[i % family.period if i % family.period < len(records) else 0]
        kw = dict(src.kwargs, **{family.width_key: w})
        if h is not None:
            kw[family.heads_key] = h
        if dp:
            kw[dp] = 0.  # no DropPath module to build (timm's ResNet blocks take one); it has no parameters
        if 'device' in kw:
            kw['device'] = 'meta'  # counted, never allocated, whatever device the model is built on
        kw = family.block_kwargs(model, [r.kwargs for r in records], plan, i, kw)
        # blocks whose arguments are the same have the same parameters (arguments that depend on a block's place
        # in the trunk, e.g. a norm every k blocks, make their own key)
        key = (src.cls, tuple(sorted((k, repr(v)) for k, v in kw.items())))
        if key not in cache:
            with on_meta():
                cache[key] = sum(p.numel() for p in src.cls(**kw).parameters())
        total += cache[key]
    return total


def _site_params(site: _Site) -> int:
    return sum(p.numel() for r in site.records for p in r.module.parameters())


def _balanced(family: TrunkFamily, model: nn.Module, site: _Site, plan: StepPlan,
              cache: Dict[Tuple[Any, ...], int]) -> StepPlan:
    """``plan`` with each step's width the one of its :func:`_options` that brings the trunk's parameters closest
    to the baseline trunk's (the nearest widths on a tie); the block counts are the rule's.

    The widths are still the rule's ``C / sqrt(2)^k`` rounded to the family's multiple, only the rounding may go to
    a neighbouring multiple: a family whose blocks carry more than the ``width^2`` cost the rule assumes (per-block
    norms, scales, token-mixing MLPs, position tables) or whose multiple is coarse misses the baseline's parameters
    with the nearest widths, and a neighbour makes that up.
    """
    target = _site_params(site)
    options = _options(family, model, site, plan)
    best, best_key = plan, None
    for choice in itertools.product(*[range(len(o)) for o in options]):
        picked = [options[i][c] for i, c in enumerate(choice)]
        widths = tuple(w for w, _ in picked)
        if any(b <= a for a, b in zip(widths, widths[1:])):
            continue
        trial = StepPlan(widths, plan.depths, tuple(h for _, h in picked) if plan.heads is not None else None)
        key = (abs(_trunk_params(family, model, site, trial, cache) - target), sum(choice))
        if best_key is None or key < best_key:
            best, best_key = trial, key
    return best


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


def _misses_parity(family: TrunkFamily, model: nn.Module, sites: Sequence[_Site], plans: Sequence[StepPlan],
                   caches: Sequence[Dict[Tuple[Any, ...], int]]) -> bool:
    """Whether the twin of ``plans`` would miss the baseline's parameters by more than :data:`PARAMS_TOLERANCE`
    (counted before anything is replaced, :func:`_trunk_params`)."""
    total = sum(p.numel() for p in model.parameters())
    delta = sum(_trunk_params(family, model, site, plan, cache) - _site_params(site)
                for site, plan, cache in zip(sites, plans, caches))
    return abs(delta) > PARAMS_TOLERANCE * total


def _convert(family: TrunkFamily, model: nn.Module, records: List[_Record], num_steps: Any, steps_move: Any,
             balance: bool = True) -> None:
    """Replace each trunk of ``model`` by its Steps trunk (in place) and record the plans in ``model.plans``.

    The rule's plans (:func:`_plan`) are kept when the twin is within :data:`PARAMS_TOLERANCE` of the baseline's
    parameters; otherwise (and with ``balance``) each trunk's widths are rounded to the neighbouring multiples that
    bring it closest to its baseline's parameters (:func:`_balanced`)."""
    by_id = {id(r.module): r for r in records}
    sites = []
    for path, dim in family.sites(model):
        container = model.get_submodule(path)
        lead = family.lead
        named = list(container.named_children()) if lead else []
        blocks = [b for _, b in named[lead:]] if lead else list(container)
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
        sites.append(_Site(path, recs, dim, tuple(b for _, b in named[:lead]), tuple(n for n, _ in named)))
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
    plans = []
    for site, s, k in zip(sites, steps, moves):
        if s < 1:
            raise ValueError(f'num_steps for {site.path} is {s}; expected >= 1')
        plans.append(_plan(family, model, site, s, k, fewer=num_steps is None))
    caches: List[Dict[Tuple[Any, ...], int]] = [{} for _ in sites]
    if balance and _misses_parity(family, model, sites, plans, caches):
        plans = [_balanced(family, model, site, plan, cache) for site, plan, cache in zip(sites, plans, caches)]
    model.plans = {}
    for site, plan in zip(sites, plans):
        trunk = _trunk(family, plan, site, model)
        family.init(model, trunk)
        if family.adapt is not None:
            family.adapt(model, trunk, records)
        if site.names:
            trunk = LeadTimmSteps(site.lead, _block_names(site.names, len(site.lead) + plan.num_blocks), trunk)
        parent, _, name = site.path.rpartition('.')
        setattr(model.get_submodule(parent) if parent else model, name, trunk)
        model.plans[site.path] = plan
    if family.isotropic and sites and isinstance(getattr(model, 'feature_info', None), list) and model.feature_info:
        path, template = sites[0].path, model.feature_info[0]
        model.feature_info = [dict(template, module=f'{path}.{i}') for i in range(len(model.get_submodule(path)))]


def _create(family: TrunkFamily, variant: str, pretrained: bool = False, **kwargs: Any) -> nn.Module:
    num_steps, steps_move = kwargs.pop('num_steps', None), kwargs.pop('steps_move', None)
    balance = bool(kwargs.pop('balance_widths', True))
    if pretrained:
        cfg = resolve_pretrained_cfg(variant, kwargs.get('pretrained_cfg'), kwargs.get('pretrained_cfg_overlay'))
        if _weight_source(cfg.to_dict()) is None:
            raise _no_weights_error(variant)
    name = variant
    if family.by_baseline_name and variant.startswith('steps_'):
        # the twin's pretrained config (never the baseline's weights), the baseline's name for the builder's lookup
        kwargs['pretrained_cfg'] = resolve_pretrained_cfg(
            variant, kwargs.get('pretrained_cfg'), kwargs.pop('pretrained_cfg_overlay', None)).to_dict()
        name = variant[len('steps_'):]
    cls = getattr(family.module, family.model_cls)
    records: List[_Record] = []

    def construct(**model_kwargs: Any) -> nn.Module:
        sig = inspect.signature(cls)
        for p in family.block_params:
            model_kwargs[p] = _recorder(model_kwargs.get(p, sig.parameters[p].default), records)
        model = _probed(cls, family.swaps, records)(**model_kwargs)
        _convert(family, model, records, num_steps, steps_move, balance)
        return model

    construct.__name__ = construct.__qualname__ = cls.__name__
    builder = getattr(family.module, family.builder)
    scope = dict(builder.__globals__, **{family.model_cls: construct})
    probe = types.FunctionType(builder.__code__, scope, builder.__name__, builder.__defaults__, builder.__closure__)
    probe.__kwdefaults__ = builder.__kwdefaults__
    return probe(name, pretrained, **kwargs)


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
    """None (heads by the ViT rule, each step with its own rotary table: :func:`_eva_step_ropes`), unless the
    model drops patches (their kept indices select from the model's one table) or the ViT rule gives a step a head
    size that a 2-D rotary table cannot take (not a multiple of 4: 456 channels in 8 heads): then every step keeps
    the model's head size, and the widths are multiples of it."""
    if getattr(model, 'rope', None) is None:
        return None
    own, width, heads = int(kw['dim']) // int(kw['num_heads']), int(kw['dim']), int(kw['num_heads'])
    if getattr(model, 'patch_drop', None) is not None:
        return own
    for level in (1, 2):  # the steps below the trunk's width by the isotropic rule (3 steps)
        w, h = step_width(width, level, heads, 8)
        if (w // h) % 4:
            return own
    return None


def _record_grid(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
    """A forward hook of EVA's patch embedding: the grid of the input it embedded (NHWC output with a dynamic
    image size, else its fixed ``grid_size``), for the steps' rotary tables."""
    module.stepsnet_grid = tuple(output.shape[1:3]) if output.ndim == 4 else tuple(module.grid_size)


def _eva_step_ropes(model: nn.Module, trunk: 'TimmSteps', records: Sequence[_Record]) -> None:
    """A rotary embedding for every step whose head size is not the model's, built as the model built its own
    (same type, temperature, grid and options) for the step's width and heads; registered on the model
    (``step_ropes``: no parameters, no saved state) and used by the trunk's per-block views."""
    rope = getattr(model, 'rope', None)
    if rope is None or trunk.plan.heads is None:
        return
    made = next((r for r in records if r.module is rope), None)
    if made is None:
        raise ValueError('EVA: the rotary embedding was not built by create_rope_embed; expected timm\'s factory')
    own = int(made.kwargs['dim']) // int(made.kwargs['num_heads'])
    ropes: Dict[int, nn.Module] = {}
    for step, (w, h) in enumerate(zip(trunk.plan.widths, trunk.plan.heads)):
        if w // h == own:
            continue
        if (w // h) % 4:
            raise ValueError(f'EVA: a step of {w} channels in {h} heads has {w // h} channels per head; a 2-D rotary '
                             'table needs a multiple of 4')
        ropes[step] = made.cls(**dict(made.kwargs, dim=w, num_heads=h))
    if not ropes:
        return
    if not hasattr(model, 'step_ropes'):
        model.step_ropes = nn.ModuleDict()
        model.patch_embed.register_forward_hook(_record_grid)
    for step, module in ropes.items():
        model.step_ropes[f'step{step}'] = module
    trunk.step_ropes = ropes
    object.__setattr__(trunk, 'rope_grid', model.patch_embed)  # a reference, not a submodule of the trunk


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
                swaps={'EvaBlock': None, 'EvaBlockPostNorm': None, 'create_rope_embed': None}, heads_key='num_heads',
                head_dim=_eva_head_dim, refuse=_eva_refuse, adapt=_eva_step_ropes),
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
