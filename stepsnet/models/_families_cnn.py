"""Steps twins of timm's convolutional networks:
rows of :data:`stepsnet.models.generic_families.GENERIC_FAMILIES`.

Imported only through :mod:`stepsnet.models.generic_families`; every row uses the mechanism of
:mod:`stepsnet.models.generic_twins` (:class:`TrunkFamily`).

Two kinds of CNN stage are converted (Step by Step Network, arXiv:2511.14329):

* **Stages that downsample outside their blocks** (RepViT, SHViT, FasterNet, StarNet, CSPNet): every block of
  the stage is at the stage's width, so the whole block sequence is the Steps trunk (StarNet keeps its strided
  conv, the first child of the stage's sequence, in front of the trunk). The generic rule applies: the last two
  stages, ``1 + 2 log2(C / C_ref)`` steps with the stage before them as reference, moving 3 and 1 blocks (the
  ConvNeXt rule of :mod:`stepsnet.models.twins`).
* **ResNet-like stages whose first block is strided or widening** (ResNetV2, RegNet, Res2Net, SKNet, ResNeSt):
  the first block stays as it is and the blocks after it become the trunk, as Steps-ResNet does (Table 12 of the
  paper). Their width arguments are the input and the output width (``in_chs`` / ``out_chs``, ``inplanes`` /
  ``planes``), both set from the step's width. The ResNet-derived families follow the paper's ResNet rule
  (reference: stage 1, so stages 3 / 4 get 5 / 7 steps moving 3 / 1 blocks). Widths are floored as in the
  paper's tables where any width makes a whole block, and otherwise the nearest multiple that keeps its groups
  whole (grouped convolutions, group norms, split attention).

Rules are read from the built model's ``feature_info`` (each stage's width), so a stage whose only block is its first
one still counts as the reference. A family's own weight init runs on every new trunk; where it zero-initialises the
last norm of each residual branch, the model class's default for that is used.
"""
import inspect
import math
import re
from fractions import Fraction
from functools import partial
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import torch.nn as nn
from timm.layers import DropPath
from timm.models import (
    cspnet,
    fasternet,
    regnet,
    repvit,
    res2net,
    resnest,
    resnet,
    resnetv2,
    shvit,
    sknet,
    starnet,
)
from timm.models._manipulate import named_apply

from stepsnet.models.generic_twins import TrunkFamily, _apply_method, _stage_blocks, _stage_rule
from stepsnet.models.steps_resnet import _width_multiple

# ---------------------------------------------------------------------------------------------------------------
# sites and rules


def _children(pattern: str) -> Callable[[nn.Module], List[Tuple[str, int]]]:
    """Sites: the model's children whose names match ``pattern`` (ResNet's ``layer1 ..``)."""
    def sites(model: nn.Module) -> List[Tuple[str, int]]:
        return [(n, 1) for n, _ in model.named_children() if re.fullmatch(pattern, n)]
    return sites


def _stages(model: nn.Module) -> List[Tuple[str, int]]:
    """Sites: each stage of ``model.stages`` as a whole (StarNet: a sequence of its strided conv and its blocks)."""
    return [(f'stages.{i}', 1) for i in range(len(model.stages))]


def _stage_widths(model: nn.Module, paths: Sequence[str]) -> List[int]:
    """The output width of the stage that holds each site, from the model's ``feature_info``."""
    info = {f['module']: int(f['num_chs']) for f in getattr(model, 'feature_info', [])}
    widths = []
    for path in paths:
        stage = next((m for m in info if path == m or path.startswith(m + '.')), None)
        if stage is None:
            raise ValueError(f'{type(model).__name__}: no feature_info entry holds {path!r}; expected one per stage '
                             f'(found {sorted(info)})')
        widths.append(info[stage])
    return widths


def _rule(reference: Callable[[int], int]) -> Callable[..., Tuple[List[int], List[int]]]:
    """A stage rule over all sites (empty ones too): the last two stages move 3 and 1 blocks and get
    ``1 + 2 log2(C / C_ref)`` steps, ``C_ref`` being the width of stage ``reference(number of stages)``."""
    def rule(model: nn.Module, paths: Sequence[str], depths: Sequence[int]) -> Tuple[List[int], List[int]]:
        n = len(paths)
        out = _stage_rule(_stage_widths(model, paths), depths, reference=reference(n), moves={n - 2: 3, n - 1: 1}) \
            if n >= 3 else dict(num_steps=(1,) * n, steps_move=(0,) * n)
        if all(s == 1 for s in out['num_steps']):  # a twin without a Steps trunk would be the baseline, not a twin
            raise ValueError(f'{type(model).__name__}: no stage that the rule converts has blocks after its first one '
                             f'(blocks after the first, per stage: {tuple(depths)}); expected one to convert')
        return list(out['num_steps']), list(out['steps_move'])
    return rule


# The paper's ResNet rule (Table 12): stage 1 is the reference, stages 3 / 4 get 5 / 7 steps moving 3 / 1 blocks.
_resnet_rule = _rule(lambda n: 0)


def _class_default(model: nn.Module, name: str) -> Any:
    """The default of one of the model class's constructor arguments (a flag its init reads, not kept on it)."""
    return inspect.signature(type(model)).parameters[name].default


def _norm_groups(norm_layer: Any) -> int:
    """The groups a norm layer splits its channels into (group norms, EvoNorm-S0), 1 for other norms."""
    try:
        params = inspect.signature(norm_layer).parameters
    except (TypeError, ValueError):  # not introspectable: a norm without groups
        return 1
    for name in ('num_groups', 'groups'):
        p = params.get(name)
        if p is not None and isinstance(p.default, int) and p.default > 0:
            return p.default
    return 1


def _in_is_out(model: nn.Module, baseline: Sequence[Mapping[str, Any]], plan: Any, index: int,
               kw: Dict[str, Any], width_key: str = 'out_chs', in_key: str = 'in_chs') -> Dict[str, Any]:
    """Block arguments: a trunk block takes and gives the step's width (the baseline's blocks after the first do)."""
    return dict(kw, **{in_key: kw[width_key]})


# ---------------------------------------------------------------------------------------------------------------
# RepViT, FasterNet, StarNet: plain stages at one width


def _no_init(model: nn.Module, trunk: nn.Module) -> None:
    """RepViT and SHViT have no model-wide init: their blocks initialise themselves (conv-norm pairs set their
    BatchNorm's weight, zero where it ends a residual branch)."""


def _shvit_block_kwargs(model: nn.Module, baseline: Sequence[Mapping[str, Any]], plan: Any, index: int,
                        kw: Dict[str, Any]) -> Dict[str, Any]:
    """SHViT's single-head attention runs on the first ``pdim`` channels of a block: a step keeps the baseline's
    fraction of them (the ViT rule scales heads with the width; here the one head's width)."""
    base = baseline[0]
    return dict(kw, pdim=max(1, round(int(kw['dim']) * int(base['pdim']) / int(base['dim']))))


def _fasternet_init(model: nn.Module, trunk: nn.Module) -> None:
    # FasterNet's init walks ``self.named_modules()`` (trunc-normal convs and linears): run it over the new trunk
    fasternet.FasterNet._initialize_weights(trunk)


# ---------------------------------------------------------------------------------------------------------------
# ResNetV2: the first block of each stage stays


def _resnetv2_multiple(model: nn.Module, kw: Mapping[str, Any]) -> Optional[int]:
    """None (floored, as the paper's ResNet) unless a group norm needs whole groups in the block's input and in its
    bottleneck (``make_divisible(width * bottle_ratio)``): then multiples of both (128 for 32 groups and 1/4)."""
    groups = _norm_groups(kw.get('norm_layer'))
    if groups == 1:
        return None
    return math.lcm(groups, round(groups / float(kw.get('bottle_ratio') or 1.)))


# ---------------------------------------------------------------------------------------------------------------
# RegNet (X, Y, V: stages s1 .. s4 whose first block strides and widens) and CSPNet (CSPResNet, CSPDarkNet, DarkNet,
# CS3 nets: each stage's block sequence after its own down and expansion convolutions, every block at one width)


def _bottleneck_multiple(key: str) -> Callable[[nn.Module, Mapping[str, Any]], Optional[int]]:
    """``multiple_of`` for blocks whose grouped bottleneck, ``round(width * bottle_ratio)`` wide, must be a multiple
    of the block argument ``key`` (RegNet's ``group_size``, the channels of a group; CSPNet's ``groups``, their
    count): the smallest width that gives such a bottleneck (None, floored widths, for ungrouped blocks)."""
    def multiple(model: nn.Module, kw: Mapping[str, Any]) -> Optional[int]:
        group, ratio = int(kw.get(key) or 1), float(kw.get('bottle_ratio') or 1.)
        if group == 1:
            return None
        return int((Fraction(group) / Fraction(ratio).limit_denominator(64)).numerator)
    return multiple


def _init_by(module: Any) -> Callable[[nn.Module, nn.Module], None]:
    """The family's ``_init_weights(module, name, zero_init_last)`` applied over a new trunk, with the model class's
    default ``zero_init_last`` (ResNetV2, RegNet, CSPNet)."""
    def init(model: nn.Module, trunk: nn.Module) -> None:
        named_apply(partial(module._init_weights, zero_init_last=_class_default(model, 'zero_init_last')), trunk)
    return init


# ---------------------------------------------------------------------------------------------------------------
# timm's ResNet class with other blocks (Res2Net, SKNet, ResNeSt)


def _resnet_multiple(model: nn.Module, kw: Mapping[str, Any]) -> Optional[int]:
    """Feature widths (``inplanes``) whose planes keep every group whole, as Steps-ResNet plans them (see
    :func:`stepsnet.models.steps_resnet._width_multiple`); None floors them (the paper's 181, 90)."""
    expansion = int(kw['inplanes']) // int(kw['planes'])
    planes = _width_multiple(int(kw.get('cardinality') or 1), int(kw.get('base_width') or 64),
                             int(kw.get('reduce_first') or 1), kw.get('norm_layer'))
    # split-attention (ResNeSt's radix) and selective-kernel (SKNet's paths) convs split the planes evenly
    sk = kw.get('sk_kwargs') or {}
    paths = len(sk.get('kernel_size') or (3, 5)) if 'sk_kwargs' in kw else int(kw.get('radix') or 1)
    if paths > 1:
        planes = math.lcm(planes or 1, paths)
    if expansion == 1 and planes is None:
        return None
    return expansion * (planes or 1)


def _resnet_block_kwargs(model: nn.Module, baseline: Sequence[Mapping[str, Any]], plan: Any, index: int,
                         kw: Dict[str, Any]) -> Dict[str, Any]:
    """A trunk block's planes follow its feature width by the block's expansion; timm's ResNet blocks take their
    stochastic depth as a DropPath module (or None), not a rate."""
    expansion = int(baseline[0]['inplanes']) // int(baseline[0]['planes'])
    rate = float(kw.get('drop_path') or 0.)
    return dict(kw, planes=int(kw['inplanes']) // expansion, drop_path=DropPath(rate) if rate > 0. else None)


def _resnet_init(model: nn.Module, trunk: nn.Module) -> None:
    # ResNet.init_weights walks ``self.named_modules()`` (Kaiming convs, zero-init last norms): run it over the trunk
    resnet.ResNet.init_weights(trunk, zero_init_last=_class_default(model, 'zero_init_last'))


def _resnet_class(name: str, module: Any, builder: str) -> TrunkFamily:
    """A family of timm's ``ResNet`` class built by another module's builder with its own block class."""
    return TrunkFamily(name, module, builder, 'ResNet', _children(r'layer\d+'), _resnet_init, block_params=('block',),
                       isotropic=False, width_key='inplanes', block_kwargs=_resnet_block_kwargs, lead=1,
                       multiple_of=_resnet_multiple, steps_rule=_resnet_rule)


FAMILIES: Tuple[TrunkFamily, ...] = (
    TrunkFamily('RepViT', repvit, '_create_repvit', 'RepVit', _stage_blocks(1), _no_init,
                swaps={'RepVitStage': {'RepViTBlock': None}}, isotropic=False, width_key='in_dim',
                period=2),  # squeeze-excite in every other block
    TrunkFamily('FasterNet', fasternet, '_create_fasternet', 'FasterNet', _stage_blocks(1), _fasternet_init,
                swaps={'Block': {'MLPBlock': None}}, isotropic=False),
    TrunkFamily('SHViT', shvit, '_create_shvit', 'SHViT', _stage_blocks(1), _no_init,
                swaps={'StageBlock': {'BasicBlock': None}}, isotropic=False, block_kwargs=_shvit_block_kwargs),
    TrunkFamily('StarNet', starnet, '_create_starnet', 'StarNet', _stages, _apply_method,
                swaps={'Block': None}, isotropic=False, lead=1),  # the stage's strided conv stays
    TrunkFamily('ResNetV2', resnetv2, '_create_resnetv2', 'ResNetV2', _stage_blocks(1), _init_by(resnetv2),
                swaps={'PreActBasic': None, 'PreActBottleneck': None, 'Bottleneck': None}, isotropic=False,
                width_key='out_chs', block_kwargs=_in_is_out, lead=1, multiple_of=_resnetv2_multiple,
                steps_rule=_resnet_rule),
    TrunkFamily('RegNet', regnet, '_create_regnet', 'RegNet', _children(r's\d+'), _init_by(regnet),
                swaps={'Bottleneck': None, 'PreBottleneck': None}, isotropic=False, width_key='out_chs',
                block_kwargs=_in_is_out, lead=1, multiple_of=_bottleneck_multiple('group_size'),
                steps_rule=_resnet_rule, by_baseline_name=True),
    TrunkFamily('CSPNet', cspnet, '_create_cspnet', 'CspNet', _stage_blocks(1), _init_by(cspnet),
                swaps={'create_csp_stages': {'_get_block_fn': {'BottleneckBlock': None, 'DarkBlock': None,
                                                               'EdgeBlock': None}}},
                isotropic=False, width_key='out_chs', block_kwargs=_in_is_out,
                multiple_of=_bottleneck_multiple('groups'), by_baseline_name=True),
    _resnet_class('Res2Net', res2net, '_create_res2net'),
    _resnet_class('SKNet', sknet, '_create_skresnet'),
    _resnet_class('ResNeSt', resnest, '_create_resnest'),
)
