"""Steps twins of timm's hierarchical vision transformers (stages of attention blocks):
rows of :data:`stepsnet.models.generic_families.GENERIC_FAMILIES`.

Imported only through :mod:`stepsnet.models.generic_families`; every row uses the mechanism of
:mod:`stepsnet.models.generic_twins` (:class:`TrunkFamily`).
Every family here is converted by the paper's hierarchical rule as the mechanism applies it (Step by Step Network,
arXiv:2511.14329, the ConvNeXt rule: the last two stages, ``1 + 2 log2(C / C_ref)`` steps, moves 3 and 1): each
stage's blocks are rebuilt at the step widths from a baseline block's arguments, with heads scaled by the ViT rule.
What differs between the families is only where their stages keep their blocks, which arguments alternate along a
stage (``period``), which depend on a block's place in it (``block_kwargs``), and their weight init:

* **Swin V2** (``swin_transformer_v2``): regular and shifted windows alternate along the real block sequence of a
  stage, across step boundaries (period 2, as :mod:`stepsnet.models.steps_swin` does for Swin). Every block has its
  own continuous position bias MLP (one output per head of its step) and its own attention mask; the residual
  post-norms of new blocks are zeroed as timm zeroes them.
* **Swin V2 CR** (``swin_transformer_v2_cr``): as Swin V2, plus the main-branch norms timm places by position (every
  ``extra_norm_period`` blocks, and at the end of a stage: the network's final norm in the last stage), placed along
  the real block sequence.
* **FocalNet**, **PVT v2**, **NesT**, **TinyViT**, **Visformer**: one block type per stage; TinyViT's first stage
  (MBConv blocks) is not a transformer stage and is left as it is (it comes before the converted stages in any
  case). NesT and Visformer have three stages: the rule converts the last two, against the first.
* **Twins** (PCPVT / SVT): SVT's locally grouped and global sub-sampled attention alternate (period 2); the
  positional encoding generator (PEG) that timm runs after a stage's first block still follows the trunk's first
  block, on the full-width state (it is a depthwise convolution, so it acts on every chunk as it would at its place).
"""
import types
from functools import partial
from typing import Any, Dict, List, Mapping, Sequence, Tuple

import torch.nn as nn
from timm.models import focalnet, nest, pvt_v2, swin_transformer_v2, swin_transformer_v2_cr, tiny_vit, visformer
from timm.models import twins as timm_twins
from timm.models._manipulate import named_apply

from stepsnet.models.generic_twins import TrunkFamily, _apply_method, _stage_blocks
from stepsnet.steps import StepPlan

__all__ = ['FAMILIES']


def _swinv2_init(model: nn.Module, trunk: nn.Module) -> None:
    """timm's Swin V2 init: trunc-normal linears, then the residual post-norms zeroed (each block starts as the
    identity), with timm's own ``SwinTransformerV2Stage._init_respostnorm`` run over the new blocks."""
    trunk.apply(partial(model._init_weights, needs_reset=False))
    swin_transformer_v2.SwinTransformerV2Stage._init_respostnorm(types.SimpleNamespace(blocks=list(trunk.children())))


def _swinv2_cr_init(model: nn.Module, trunk: nn.Module) -> None:
    """timm's Swin V2 CR init: in its default 'reset' mode the blocks keep the init they build themselves (post-norm
    weights at ``init_values``); any other mode re-initialises the linears by name (``init_weights_swin``)."""
    if model.weight_init_mode != 'reset':
        named_apply(partial(swin_transformer_v2_cr.init_weights_swin, needs_reset=False), trunk)


def _swinv2_cr_block_kwargs(
        model: nn.Module,
        baseline: Sequence[Mapping[str, Any]],
        plan: StepPlan,
        index: int,
        kwargs: Dict[str, Any],
) -> Dict[str, Any]:
    """Main-branch norms (``extra_norm``) by place, as timm places them in a stage, along the real block sequence:
    every ``p``-th block (``extra_norm_period``, read off the baseline's inner blocks; a stage shorter than ``p``
    shows none and gets none) and the trunk's last block where the baseline's last block has one (the stage-ending
    norm: the network's final norm in the last stage, so the last step must keep a block at the full width)."""
    flags = [bool(kw.get('extra_norm')) for kw in baseline]
    inner = [i for i, flag in enumerate(flags[:-1]) if flag]
    period = inner[0] + 1 if inner else 0
    if flags[-1] and plan.depths[-1] == 0:
        raise ValueError(
            f'Swin V2 CR: the stage ends with a norm over all {plan.channels} channels (in the last stage, the '
            f'final norm) but the plan [{plan}] leaves its last step without blocks; expected at least one')
    last = index == plan.num_blocks - 1
    return dict(kwargs, extra_norm=bool(period and (index + 1) % period == 0) or (flags[-1] and last))


def _focalnet_init(model: nn.Module, trunk: nn.Module) -> None:
    named_apply(focalnet._init_weights, trunk)


def _nest_init(model: nn.Module, trunk: nn.Module) -> None:
    named_apply(nest._init_nest_weights, trunk)


def _twins_sites(model: nn.Module) -> List[Tuple[str, int]]:
    # Twins keeps each stage's blocks in ``blocks[k]`` (a list of lists beside patch_embeds / pos_block), tokens NLC
    return [(f'blocks.{k}', -1) for k in range(len(model.blocks))]


def _nest_sites(model: nn.Module) -> List[Tuple[str, int]]:
    # each level runs its blocks on blockified tokens (B, T, N, C)
    return [(f'levels.{i}.transformer_encoder', -1) for i in range(len(model.levels))]


def _tiny_vit_sites(model: nn.Module) -> List[Tuple[str, int]]:
    # stage 0 is a ConvLayer of MBConv blocks (not recorded, not a transformer stage); the others run NHWC maps
    return [(f'stages.{i}.blocks', -1) for i, s in enumerate(model.stages) if isinstance(s, tiny_vit.TinyVitStage)]


def _visformer_sites(model: nn.Module) -> List[Tuple[str, int]]:
    # three stages as attributes, NCHW maps; the first has convolution blocks only (attention disabled)
    return [(f'stage{i}', 1) for i in (1, 2, 3)]


FAMILIES: Tuple[TrunkFamily, ...] = (
    TrunkFamily('SwinV2', swin_transformer_v2, '_create_swin_transformer_v2', 'SwinTransformerV2',
                _stage_blocks(-1, attr='layers'), _swinv2_init,
                swaps={'SwinTransformerV2Stage': {'SwinTransformerV2Block': None}}, isotropic=False,
                heads_key='num_heads', period=2),
    TrunkFamily('SwinV2-CR', swin_transformer_v2_cr, '_create_swin_transformer_v2_cr', 'SwinTransformerV2Cr',
                _stage_blocks(-1), _swinv2_cr_init,
                swaps={'SwinTransformerV2CrStage': {'SwinTransformerV2CrBlock': None}}, isotropic=False,
                heads_key='num_heads', period=2, block_kwargs=_swinv2_cr_block_kwargs),
    TrunkFamily('FocalNet', focalnet, '_create_focalnet', 'FocalNet', _stage_blocks(1, attr='layers'),
                _focalnet_init, swaps={'FocalNetStage': {'FocalNetBlock': None}}, isotropic=False),
    TrunkFamily('PVT-v2', pvt_v2, '_create_pvt2', 'PyramidVisionTransformerV2', _stage_blocks(-1), _apply_method,
                swaps={'PyramidVisionTransformerStage': {'Block': None}}, isotropic=False, heads_key='num_heads'),
    TrunkFamily('Twins', timm_twins, '_create_twins', 'Twins', _twins_sites, _apply_method,
                block_params=('block_cls',), isotropic=False, heads_key='num_heads', period=2),
    TrunkFamily('NesT', nest, '_create_nest', 'Nest', _nest_sites, _nest_init,
                swaps={'NestLevel': {'TransformerLayer': None}}, isotropic=False, heads_key='num_heads'),
    TrunkFamily('TinyViT', tiny_vit, '_create_tiny_vit', 'TinyVit', _tiny_vit_sites,
                partial(_apply_method, needs_reset=False), swaps={'TinyVitStage': {'TinyVitBlock': None}},
                isotropic=False, heads_key='num_heads'),
    TrunkFamily('Visformer', visformer, '_create_visformer', 'Visformer', _visformer_sites, _apply_method,
                swaps={'Block': None}, isotropic=False, heads_key='num_heads'),
)
