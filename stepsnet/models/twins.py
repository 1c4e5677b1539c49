"""Steps twins of timm models: any timm ResNet, ViT / DeiT, Swin or ConvNeXt configuration as a Step by Step Network.

Step by Step Network (StepsNet), arXiv:2511.14329. The paper converts a few sizes per family (Tables 12-14); the same
construction applies to every configuration timm has. :func:`create_steps_model` builds the twin of a timm model
name with one rule per family, applied to the baseline's stage widths ``C`` and trunk depths ``D``:

* **Steps.** The first step is as narrow as a fixed reference width and every later step is ``sqrt(2)`` wider, so
  a trunk of width ``C`` has ``1 + 2 log2(C / C_ref)`` steps. ``C_ref`` is stage 1's width for ResNet (stage 3:
  5 steps, stage 4: 7), stage 2's for Swin and ConvNeXt (3 and 5), and ``C / 2`` for the isotropic ViT (3).
* **Moves.** In a hierarchical stage each substitution moves ``k = min(D, K)`` blocks, ``K`` being the paper's move
  for that stage (ResNet 3 / 1, Swin 3 / 2, ConvNeXt 3 / 1 in stages 3 / 4; ``D`` counts a ResNet stage's blocks
  after its strided first block). Swin-S and -B move 3 blocks of an 18-block stage 3 as Swin-T does of its 6, so the
  depth added per stage is fixed rather than proportional. A ViT trunk moves ``k = D / 2`` (rounded down, at
  least 1), the paper's DeiT pattern ``C/2 x D, C/sqrt2 x D/2, C x D/2``. A stage with ``D = 0`` stays as it is.

This reproduces every paper model exactly (Steps-ResNet-18/34/50, Steps-DeiT-T/S/B, Steps-Swin-T/S/B and the
project's Steps-ConvNeXt-T/S/B: the registered ``steps_*`` entrypoints) and never asks the planner for more blocks
than a stage has. Widths are the planner's (floored for ResNet, whole groups for ResNeXt, multiples of 8 with their
head counts for the Transformers), so parity with the baseline depends on the family; ``docs/models.md`` lists it
for 40+ timm models. ``num_steps`` / ``steps_move`` passed by the user replace the rule's.

A twin is the timm model ``steps_<timm name>``: :func:`register_twin` registers it (with a pretrained config copied
from the baseline's: input size, normalisation, crop) so that ``timm.create_model``, ``local-dir:`` weight folders
and ``features_only`` work as for any timm model. Only the paper's models are registered on import; registering
every twin (about 300 timm configurations) would bury them. The baseline's configuration is read from its timm
entrypoint without building it: the entrypoint runs once with the family's builder (``_create_resnet``, ...)
replaced by a recorder in a private copy of its globals, so timm itself is never modified.
"""
import inspect
import types
from dataclasses import dataclass
from typing import Any, Callable, Dict, Mapping, Tuple

import timm
import torch.nn as nn
from timm.models import generate_default_cfgs, register_model
from timm.models.convnext import ConvNeXt
from timm.models.resnet import ResNet
from timm.models.swin_transformer import SwinTransformer
from timm.models.vision_transformer import VisionTransformer

from stepsnet.steps import StepPlan
from stepsnet.utils.meta import on_meta

from .generic_families import GENERIC_FAMILIES
from .generic_twins import _stage_rule
from .steps_convnext import _create_steps_convnext
from .steps_resnet import _create_steps_resnet
from .steps_swin import _create_steps_swin
from .steps_vit import _create_steps_vit

__all__ = [
    'TWIN_BASELINES', 'baseline_args', 'twin_args', 'twin_name', 'register_twin', 'create_steps_model', 'build_twin',
    'twin_plans', 'step_plans',
]

PAPER = dict(paper_ids='arXiv:2511.14329', paper_name='Step by Step Network')
# pretrained-config fields a twin takes from its baseline: what the input looks like and where the head is
_CFG_FIELDS = ('num_classes', 'input_size', 'pool_size', 'crop_pct', 'crop_mode', 'interpolation', 'mean', 'std',
               'fixed_input_size', 'first_conv', 'classifier', 'license', 'min_input_size')
default_cfgs: Dict[str, Any] = {}  # filled by register_twin; timm's register_model reads it


def _default(cls: type, name: str) -> Any:
    return inspect.signature(cls.__init__).parameters[name].default


def _resnet_rule(args: Mapping[str, Any]) -> Dict[str, Any]:
    widths = args.get('channels', _default(ResNet, 'channels'))
    trunks = [n - 1 for n in args['layers']]  # each stage's strided first block stays
    return _stage_rule(widths, trunks, reference=0, moves={2: 3, 3: 1})


def _vit_rule(args: Mapping[str, Any]) -> Dict[str, Any]:
    depth = args.get('depth', _default(VisionTransformer, 'depth'))
    return dict(num_steps=3, steps_move=max(1, depth // 2))


def _swin_rule(args: Mapping[str, Any]) -> Dict[str, Any]:
    depths = args.get('depths', _default(SwinTransformer, 'depths'))
    dim = args.get('embed_dim', _default(SwinTransformer, 'embed_dim'))
    widths = list(dim) if isinstance(dim, (list, tuple)) else [dim * 2 ** i for i in range(len(depths))]
    return _stage_rule(widths, depths, reference=1, moves={2: 3, 3: 2})


def _convnext_rule(args: Mapping[str, Any]) -> Dict[str, Any]:
    depths = args.get('depths', _default(ConvNeXt, 'depths'))
    widths = args.get('dims', _default(ConvNeXt, 'dims'))
    return _stage_rule(widths, depths, reference=1, moves={2: 3, 3: 1})


@dataclass(frozen=True)
class _Family:
    name: str
    builders: Tuple[str, ...]  # timm's private builders that this family's entrypoints call
    rule: Callable[[Mapping[str, Any]], Dict[str, Any]]
    create: Callable[..., nn.Module]  # ours: create(variant, pretrained, **kwargs)


FAMILIES = (
    _Family('ResNet', ('_create_resnet',), _resnet_rule, _create_steps_resnet),
    _Family('ViT', ('_create_vision_transformer', '_create_deit'), _vit_rule, _create_steps_vit),
    _Family('Swin', ('_create_swin_transformer',), _swin_rule, _create_steps_swin),
    _Family('ConvNeXt', ('_create_convnext',), _convnext_rule, _create_steps_convnext),
)
# The families converted by one mechanism (stepsnet.models.generic_twins: EVA, BEiT, CaiT, MLP-Mixer, MetaFormer, ...),
# looked up after the four above.
GENERIC = tuple(_Family(f.name, f.builders, f.rule, f.create) for f in GENERIC_FAMILIES)

# The baselines of the parity table in docs/models.md: each family's ImageNet sizes in timm.
TWIN_BASELINES: Tuple[str, ...] = (
    'resnet18', 'resnet26', 'resnet34', 'resnet50', 'resnet101', 'resnet152', 'resnet200', 'resnet50d',
    'wide_resnet50_2', 'wide_resnet101_2', 'resnext50_32x4d', 'resnext101_32x4d', 'resnext101_32x8d',
    'resnext101_64x4d',
    'vit_tiny_patch16_224', 'vit_small_patch16_224', 'vit_base_patch16_224', 'vit_large_patch16_224',
    'vit_huge_patch14_224', 'deit_tiny_patch16_224', 'deit_small_patch16_224', 'deit_base_patch16_224',
    'deit_base_patch16_384', 'deit3_small_patch16_224', 'deit3_medium_patch16_224', 'deit3_base_patch16_224',
    'deit3_large_patch16_224', 'deit3_huge_patch14_224',
    'swin_tiny_patch4_window7_224', 'swin_small_patch4_window7_224', 'swin_base_patch4_window7_224',
    'swin_large_patch4_window7_224', 'swin_base_patch4_window12_384', 'swin_large_patch4_window12_384',
    'convnext_atto', 'convnext_femto', 'convnext_pico', 'convnext_nano', 'convnext_tiny', 'convnext_small',
    'convnext_base', 'convnext_large', 'convnext_xlarge', 'convnext_xxlarge',
)


def baseline_args(name: str) -> Tuple[_Family, Dict[str, Any]]:
    """The family and the model arguments of a timm configuration, read from its entrypoint (nothing is built).

    Raises:
        ValueError: Not a timm model name, or not a plain ResNet / VisionTransformer / Swin / ConvNeXt configuration.
    """
    if name.startswith(('steps_', 'test_steps_')):
        raise ValueError(f'{name!r} is a Steps model already; expected the name of a timm baseline such as resnet50')
    if not timm.is_model(name):
        raise ValueError(f'{name!r} is not a timm model; expected a name from timm.list_models()')
    fn = timm.models.model_entrypoint(name)
    family = next((f for f in FAMILIES + GENERIC if set(f.builders) & set(fn.__code__.co_names)), None)
    if family is None:
        raise ValueError(
            f'timm\'s {name!r} is not built by a ResNet, VisionTransformer, SwinTransformer or ConvNeXt builder, nor '
            f'by one of {", ".join(f.name for f in GENERIC)}; Steps twins exist for those four families '
            f'({", ".join(f.name for f in FAMILIES)}) and those generic ones')
    recorded: Dict[str, Any] = {}

    def record(variant: str, pretrained: bool = False, **kwargs: Any) -> None:
        recorded.update(kwargs)

    scope = dict(fn.__globals__, **{b: record for b in family.builders})
    probe = types.FunctionType(fn.__code__, scope, fn.__name__, fn.__defaults__, fn.__closure__)
    probe.__kwdefaults__ = fn.__kwdefaults__
    probe(pretrained=False)
    if recorded.pop('distilled', False):
        raise ValueError(f'{name!r} is a distilled ViT (class and distillation heads); expected a plain ViT')
    if recorded.get('pruned'):
        raise ValueError(f'{name!r} is a pruned ResNet (its own width per layer); expected uniform stages')
    return family, {k: v for k, v in recorded.items() if v is not None}


def twin_args(name: str, **overrides: Any) -> Tuple[_Family, Dict[str, Any]]:
    """The family and the Steps model arguments of the twin of ``name``: the baseline's, plus the rule's
    ``num_steps`` / ``steps_move``, plus ``overrides``."""
    family, args = baseline_args(name)
    return family, {**args, **family.rule(args), **overrides}


def twin_name(name: str) -> str:
    """``steps_<timm name>``: the name of the twin of a timm model (the paper's models already have theirs)."""
    return f'steps_{name}'


def _twin_cfg(name: str) -> Dict[str, Any]:
    base = timm.get_pretrained_cfg(name)
    base = base.to_dict() if base is not None else {}
    return dict({k: base[k] for k in _CFG_FIELDS if base.get(k) is not None}, url='', **PAPER)


def register_twin(name: str) -> str:
    """Register the Steps twin of timm's ``name`` as the timm model ``steps_<name>`` and return that name.

    A name registered already (the paper's models, or a twin registered before) is returned as it is.
    """
    twin = twin_name(name)
    if timm.is_model(twin):
        return twin
    family, args = twin_args(name)
    default_cfgs.update(generate_default_cfgs({f'{twin}.untrained': _twin_cfg(name)}))

    def entrypoint(pretrained: bool = False, **kwargs: Any) -> nn.Module:
        return family.create(twin, pretrained, **dict(args, **kwargs))

    entrypoint.__name__ = entrypoint.__qualname__ = twin
    entrypoint.__module__ = __name__
    entrypoint.__doc__ = f"Steps twin of timm's {name} ({family.name} rule of stepsnet.models.twins)."
    register_model(entrypoint)
    return twin


def create_steps_model(name: str, pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """The Steps twin of the timm model ``name`` (e.g. ``'resnet101'``), as ``timm.create_model`` would build it.

    Registers ``steps_<name>`` with timm on first use (:func:`register_twin`). Keyword arguments are timm's
    (``num_classes``, ``drop_path_rate``, ``features_only``, ...) and the Steps ones: ``num_steps`` and
    ``steps_move`` replace the family rule's (one value per stage for ResNet, Swin and ConvNeXt, e.g.
    ``steps_move=(0, 0, 4, 1)``; one value for ViT). The generic families (:mod:`stepsnet.models.generic_twins`)
    also take ``balance_widths=False``: the rule's nearest widths even where they miss parameter parity.
    """
    return timm.create_model(register_twin(name), pretrained=pretrained, **kwargs)


def build_twin(name: str, **kwargs: Any) -> nn.Module:
    """The twin of timm's ``name`` without registering it (e.g. to count it on the meta device)."""
    family, args = twin_args(name)
    return family.create(twin_name(name), False, pretrained_cfg=_twin_cfg(name), **dict(args, **kwargs))


def step_plans(model: nn.Module) -> Dict[str, StepPlan]:
    """The step plan of every Steps trunk of a twin (``'blocks'`` for a ViT trunk)."""
    return dict(model.plans) if hasattr(model, 'plans') else {'blocks': model.plan}


def twin_plans(name: str, **overrides: Any) -> Dict[str, StepPlan]:
    """The step plan of every converted stage of the twin (``'blocks'`` for a ViT trunk), built on the meta device."""
    with on_meta():
        return step_plans(build_twin(name, **overrides))


def meta_pair(name: str) -> Tuple[nn.Module, nn.Module]:
    """timm's ``name`` and its twin, both built on the meta device (:func:`stepsnet.utils.meta.on_meta`): shapes and
    parameters, no memory. The twin is built first, so a ValueError (a configuration the rule cannot twin) comes
    before any work on the baseline."""
    with on_meta():
        twin = build_twin(name)
        return timm.create_model(name), twin
