"""Steps twins of timm's isotropic and other vision transformers and MLPs:
rows of :data:`stepsnet.models.generic_families.GENERIC_FAMILIES`.

Imported only through :mod:`stepsnet.models.generic_families`; every row uses the mechanism of
:mod:`stepsnet.models.generic_twins` (:class:`TrunkFamily`).
The rule is the mechanism's (the paper's as :mod:`stepsnet.models.twins` applies it): a single trunk at one width
gets 3 steps moving ``D // 2`` blocks (the DeiT pattern); a model with stages converts its last two with
``1 + 2 log2(C / C_ref)`` steps moving 3 and 1 blocks (the ConvNeXt rule). Heads follow the ViT rule
(:func:`stepsnet.steps.step_width`) unless the family fixes a head size.

- **XCiT**: the trunk of cross-covariance blocks (``blocks``, called with the patch grid ``(x, Hp, Wp)``, which the
  trunk's per-block views pass on). The two class-attention blocks after it only update the class token and stay.
- **ViT-RelPos** (``vision_transformer_relpos``): the ViT trunk whose blocks carry their own relative position MLP or
  bias (one per block, built for the block's head count, so each step builds its own). A bias *shared* by all blocks
  has the baseline's head count and is refused.
- **ViTamin**: timm's ``VisionTransformer`` behind ViTamin's MBConv stem; the stem is kept, the ViT trunk converted.
- **ConViT**: the trunk of gated positional self-attention (GPSA) blocks followed by plain self-attention blocks,
  where the class token enters. The twin keeps the baseline's plain blocks last (the blocks are matched from the
  end of the trunk: the last step at full width holds the baseline's last blocks) and moves the class token's entry
  (``local_up_to_layer``) to the first of them.
- **PiT**: three stages of ViT blocks with pooling between them; the last two are converted (ConvNeXt rule).
- **FastViT**: four (MobileCLIP: five) stages of RepMixer blocks, the last one(s) of attention blocks; the last two
  are converted. Attention has a fixed head size (32), which every step keeps.
- **VOLO** and **Sequencer**: a first stage (outlooker / BiLSTM blocks at 192) then three stages at one width
  (384), which the ConvNeXt rule would leave as they are (1 step between stages of one width): every stage is
  converted as a trunk of its own by the DeiT rule. Sequencer's LSTM hidden size follows each step's width in the
  baseline's ratio (1/4).
"""
import inspect
from functools import partial
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch.nn as nn
from timm.models import convit, fastvit, pit, sequencer, vision_transformer_relpos, vitamin, volo, xcit
from timm.models._manipulate import named_apply
from timm.models.vision_transformer import get_init_weights_vit

from stepsnet.models.generic_twins import TrunkFamily, _apply_method, _blocks, _stage_blocks, rescale_by_depth
from stepsnet.steps import StepPlan


def _vit_init(model: nn.Module, trunk: nn.Module) -> None:
    """timm's ``VisionTransformer.init_weights`` on a new trunk: the model's init mode (``weight_init``; 'skip' left
    the model's modules as built, and so does this), then ``fix_init``'s rescale of the output projections by block
    index over the new trunk's blocks."""
    named_apply(get_init_weights_vit(model.weight_init_mode, needs_reset=False), trunk, name='blocks')
    if model.fix_init:
        rescale_by_depth(trunk)


def _relpos_refuse(model: nn.Module, kw: Mapping[str, Any]) -> Optional[str]:
    if getattr(model, 'shared_rel_pos', None) is not None:
        return 'a relative position bias shared by all blocks has the full head count; steps have fewer heads'
    return None


def _convit_block_kwargs(model: nn.Module, baseline: Sequence[Mapping[str, Any]], plan: StepPlan, index: int,
                         kw: Dict[str, Any]) -> Dict[str, Any]:
    """GPSA or plain self-attention for block ``index`` of the twin, as the baseline block matched from the end of
    the trunk: the last step (full width) holds the baseline's last blocks, so the plain blocks stay last and as many
    as in the baseline; every earlier block is a GPSA block like the baseline's first."""
    matched = baseline[max(0, index - (plan.num_blocks - len(baseline)))]
    return dict(kw, use_gpsa=matched['use_gpsa'])


def _convit_init(model: nn.Module, trunk: nn.Module) -> None:
    """ConViT's init on a new trunk (truncated-normal linears, then GPSA's local init of its positional attention),
    and the class token's entry moved to the first plain self-attention block of the twin."""
    trunk.apply(model._init_weights)
    for m in trunk.modules():
        if hasattr(m, 'local_init'):
            m.local_init()
    uses_gpsa = [bool(b.use_gpsa) for b in trunk.children()]
    if uses_gpsa != sorted(uses_gpsa, reverse=True):
        raise ValueError(f'ConViT trunk has GPSA blocks after plain ones ({uses_gpsa}); expected GPSA blocks first')
    model.local_up_to_layer = sum(uses_gpsa)


def _fastvit_head_dim(model: nn.Module, kw: Mapping[str, Any]) -> Optional[int]:
    # AttentionBlock builds fastvit.Attention(dim) with its default head size: every step keeps it (RepMixerBlock's
    # arguments, kernel_size and inference_mode among them, are not AttentionBlock's)
    if set(kw) <= set(inspect.signature(fastvit.AttentionBlock).parameters):
        return int(inspect.signature(fastvit.Attention).parameters['head_dim'].default)
    return None


def _trunk_rule(model: nn.Module, paths: Sequence[str], depths: Sequence[int]) -> Tuple[List[int], List[int]]:
    """The DeiT rule (3 steps moving ``D // 2`` blocks) for every stage of a model whose stages are trunks at one
    width each after the first (VOLO, Sequencer: 192 then 384 x3). The ConvNeXt rule would convert nothing there:
    its steps grow with the width ratio to the stage before, 1 between stages of one width."""
    return [3 if d else 1 for d in depths], [max(1, d // 2) if d else 0 for d in depths]


def _volo_sites(model: nn.Module) -> List[Tuple[str, int]]:
    # network holds the stages (block sequences, channels last) and the downsampling layers between them
    return [(f'network.{i}', -1) for i, m in enumerate(model.network) if isinstance(m, nn.Sequential)]


def _sequencer_block_kwargs(model: nn.Module, baseline: Sequence[Mapping[str, Any]], plan: StepPlan, index: int,
                            kw: Dict[str, Any]) -> Dict[str, Any]:
    """The LSTMs' hidden size at the step's width, in the baseline's ratio to the width (1/4): the token mixer's cost
    is then quadratic in the width, as the rule's sqrt(2) width steps assume, not linear in it."""
    ratio = baseline[0]['hidden_size'] / baseline[0]['dim']
    return dict(kw, hidden_size=max(1, round(kw['dim'] * ratio)))


def _sequencer_init(model: nn.Module, trunk: nn.Module) -> None:
    named_apply(partial(sequencer._init_weights, head_bias=0.), trunk, name='blocks')


FAMILIES: Tuple[TrunkFamily, ...] = (
    TrunkFamily('XCiT', xcit, '_create_xcit', 'Xcit', _blocks, _apply_method,
                swaps={'XCABlock': None}, heads_key='num_heads'),
    TrunkFamily('ViT-RelPos', vision_transformer_relpos, '_create_vision_transformer_relpos',
                'VisionTransformerRelPos', _blocks, _vit_init, block_params=('block_fn',), heads_key='num_heads',
                refuse=_relpos_refuse),
    TrunkFamily('ViTamin', vitamin, '_create_vitamin', 'VisionTransformer', _blocks, _vit_init,
                block_params=('block_fn',), heads_key='num_heads'),
    TrunkFamily('ConViT', convit, '_create_convit', 'ConVit', _blocks, _convit_init,
                swaps={'Block': None}, heads_key='num_heads', block_kwargs=_convit_block_kwargs),
    TrunkFamily('PiT', pit, '_create_pit', 'PoolingVisionTransformer', _stage_blocks(-1, attr='transformers'),
                _apply_method, swaps={'Transformer': {'Block': None}}, isotropic=False, heads_key='num_heads'),
    TrunkFamily('FastViT', fastvit, '_create_fastvit', 'FastVit', _stage_blocks(1), _apply_method,
                swaps={'FastVitStage': {'RepMixerBlock': None, 'AttentionBlock': None}}, isotropic=False,
                head_dim=_fastvit_head_dim),
    TrunkFamily('VOLO', volo, '_create_volo', 'VOLO', _volo_sites, _apply_method,
                swaps={'Outlooker': None, 'Transformer': None}, isotropic=False, heads_key='num_heads',
                steps_rule=_trunk_rule),
    TrunkFamily('Sequencer', sequencer, '_create_sequencer2d', 'Sequencer2d', _stage_blocks(-1), _sequencer_init,
                block_params=('block_layer',), isotropic=False, block_kwargs=_sequencer_block_kwargs,
                steps_rule=_trunk_rule),
)
