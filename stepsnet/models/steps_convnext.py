"""Steps-ConvNeXt: ConvNeXt with stages 3 and 4 run as Step by Step Networks.

Step by Step Network (StepsNet), arXiv:2511.14329. The paper names ConvNeXt among its hosts but gives no table for
it; this family follows the paper's Swin rule (Table 14): 3 steps in stage 3 and 5 steps in stage 4. Each
converted stage keeps timm's full-width downsample layer (norm + 2x2 strided conv), and its blocks become an n-step
trunk derived by :func:`stepsnet.steps.plan_steps` with widths rounded to multiples of 8 (no heads). Stage 3 moves
3 blocks per substitution, as Swin does; stage 4 moves 1 (Swin moves 2 of its 2 blocks), e.g. ConvNeXt-T stage 3
384 x9 -> 192 x6, 272 x3, 384 x6 and stage 4 768 x3 -> 192 x2, 272 x1, 384 x1, 544 x1, 768 x2. The blocks are
timm's ``ConvNeXtBlock`` at each step's width (depthwise 7x7 conv, LayerNorm, MLP, layer scale); the trunk splits
the NCHW map along channels.

Why stage 4 moves 1 block: a ConvNeXt block is not purely quadratic in its width. Its depthwise conv, norm, biases
and layer scale hold about ``58 * C`` parameters (and the depthwise conv ``49 * C * HW`` multiply-adds), so every
extra block adds a little. Moving 2 blocks in stage 4 (10 blocks) puts Steps-ConvNeXt-T 0.59% above ConvNeXt-T in
parameters; moving 1 (7 blocks) keeps all three sizes within 0.4% of parameters and 0.3% of FLOPs.

Stem, stages 1-2, downsample layers, head, init and the whole timm API are timm's ``ConvNeXt``.
"""
from functools import partial
from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import DropPath, calculate_drop_path_rates, get_act_layer, to_ntuple
from timm.models import generate_default_cfgs, register_model
from timm.models._manipulate import named_apply
from timm.models.convnext import ConvNeXt, ConvNeXtBlock, _get_norm_layers, _init_weights, checkpoint_filter_fn

from stepsnet.models._builder import build_steps_model
from stepsnet.steps import StepPlan, Steps, plan_steps

__all__ = ['StepsConvNeXt']


class StepsConvNeXt(ConvNeXt):
    """timm ``ConvNeXt`` whose stages may be Step by Step trunks (``stages[i].blocks`` is a :class:`Steps`).

    Args:
        depths: Baseline blocks per stage.
        dims: Stage widths.
        num_steps: Steps per stage; 1 keeps the stage as in the baseline.
        steps_move: Blocks moved per substitution in each converted stage (``k`` of the planner).
        kernel_sizes: Depthwise kernel size, for all stages or one per stage.
        ls_init_value: Layer-scale init value (None disables layer scale).
        output_stride: Output stride of the network (8, 16 or 32); later stages are dilated.
        conv_mlp: 1x1 convs instead of linears in the MLP (channels-first blocks).
        conv_bias: Bias in the convolutions.
        use_grn: Global response norm in the MLP (ConvNeXt-V2 blocks).
        act_layer: Activation layer.
        norm_layer: Normalization layer.
        norm_eps: Normalization epsilon.
        drop_path_rate: Stochastic depth, linear over the real block sequence (all blocks of all stages, in order).
        head_init_scale: Scale of the classifier's initial weights.
        **kwargs: Everything else timm's ``ConvNeXt`` takes (``num_classes``, ``in_chans``, ``global_pool``, ...).
    """

    def __init__(
            self,
            depths: Sequence[int] = (3, 3, 9, 3),
            dims: Sequence[int] = (96, 192, 384, 768),
            num_steps: Sequence[int] = (1, 1, 3, 5),
            steps_move: Sequence[int] = (0, 0, 3, 1),
            kernel_sizes: Union[int, Sequence[int]] = 7,
            ls_init_value: Optional[float] = 1e-6,
            output_stride: int = 32,
            conv_mlp: bool = False,
            conv_bias: bool = True,
            use_grn: bool = False,
            act_layer: Union[str, Callable] = 'gelu',
            norm_layer: Optional[Union[str, Callable]] = None,
            norm_eps: Optional[float] = None,
            drop_path_rate: float = 0.,
            head_init_scale: float = 1.,
            **kwargs: Any,
    ):
        depths, dims = tuple(depths), tuple(dims)
        num_steps, steps_move = tuple(num_steps), tuple(steps_move)
        if not len(depths) == len(dims) == len(num_steps) == len(steps_move) == 4:
            raise ValueError(
                f'depths {depths}, dims {dims}, num_steps {num_steps} and steps_move {steps_move} '
                'must have one entry for each of the 4 stages')
        if output_stride not in (8, 16, 32):
            raise ValueError(f'output_stride must be 8, 16 or 32, got {output_stride}')
        plans: Dict[int, StepPlan] = {}
        for i, (dim, d, s, k) in enumerate(zip(dims, depths, num_steps, steps_move)):
            if s > 1:
                try:
                    plans[i] = plan_steps(dim, d, s, k, multiple_of=8)
                except ValueError as e:
                    raise ValueError(f'stage {i + 1} ({dim} x{d}, {s} steps): {e}') from e

        dd = {'device': kwargs.get('device'), 'dtype': kwargs.get('dtype')}
        base_depths = tuple(0 if i in plans else d for i, d in enumerate(depths))
        super().__init__(
            depths=base_depths, dims=dims, kernel_sizes=kernel_sizes, ls_init_value=ls_init_value,
            output_stride=output_stride, conv_mlp=conv_mlp, conv_bias=conv_bias, use_grn=use_grn,
            act_layer=act_layer, norm_layer=norm_layer, norm_eps=norm_eps, drop_path_rate=0.,
            head_init_scale=head_init_scale, **kwargs,
        )
        self.num_steps = num_steps
        self.plans = {}  # stage name -> StepPlan (plain Python: TorchScript leaves it out)
        kernel_sizes = to_ntuple(4)(kernel_sizes)
        norm_layer, norm_layer_cl = _get_norm_layers(norm_layer, conv_mlp, norm_eps)
        act_layer = get_act_layer(act_layer)
        for i, dilation in enumerate(self._stage_dilations(output_stride)):
            if i not in plans:
                continue
            block = partial(
                ConvNeXtBlock, kernel_size=kernel_sizes[i], dilation=dilation, ls_init_value=ls_init_value,
                conv_mlp=conv_mlp, conv_bias=conv_bias, use_grn=use_grn, act_layer=act_layer,
                norm_layer=norm_layer if conv_mlp else norm_layer_cl, **dd,
            )
            trunk = Steps(plans[i], lambda width, index, _b=block: _b(in_chs=width, out_chs=width), dim=1)
            named_apply(partial(_init_weights, head_init_scale=head_init_scale), trunk)
            self.stages[i].blocks = trunk
            self.plans[f'stages.{i}'] = plans[i]

        # stochastic depth along the real (deeper) sequence of blocks
        blocks = [m for m in self.modules() if isinstance(m, ConvNeXtBlock)]
        for blk, rate in zip(blocks, calculate_drop_path_rates(drop_path_rate, len(blocks))):
            blk.drop_path = DropPath(rate) if rate > 0. else nn.Identity()

    @staticmethod
    def _stage_dilations(output_stride: int, stem_stride: int = 4) -> Tuple[int, ...]:
        """Dilation of the blocks of each stage, as timm's ``ConvNeXt`` computes it."""
        out, curr_stride, dilation = [], stem_stride, 1
        for i in range(4):
            stride = 2 if curr_stride == 2 or i > 0 else 1
            if curr_stride >= output_stride and stride > 1:
                dilation *= stride
                stride = 1
            curr_stride *= stride
            out.append(dilation)
        return tuple(out)

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Checkpoint block by block; in a converted stage the :class:`Steps` trunk does it itself.

        timm's stage checkpoints its ``blocks`` as a plain sequence (``checkpoint_seq``), which would skip the
        trunk's split and concat, so converted stages leave their own flag off and set the trunk's.
        """
        for stage in self.stages:
            if isinstance(stage.blocks, Steps):
                stage.blocks.grad_checkpointing = enable
                stage.grad_checkpointing = False
            else:
                stage.grad_checkpointing = enable


def _create_steps_convnext(variant: str, pretrained: bool = False, **kwargs) -> StepsConvNeXt:
    return build_steps_model(
        StepsConvNeXt, variant, pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(out_indices=(0, 1, 2, 3), flatten_sequential=True),
        **kwargs,
    )


def _cfg(url: str = '', **kwargs) -> Dict[str, Any]:
    return {
        'url': url,
        'num_classes': 1000, 'input_size': (3, 224, 224), 'pool_size': (7, 7),
        'crop_pct': 0.875, 'interpolation': 'bicubic',
        'mean': IMAGENET_DEFAULT_MEAN, 'std': IMAGENET_DEFAULT_STD,
        'first_conv': 'stem.0', 'classifier': 'head.fc',
        'paper_ids': 'arXiv:2511.14329', 'paper_name': 'Step by Step Network',
        'license': 'apache-2.0',
        **kwargs,
    }


default_cfgs = generate_default_cfgs({
    'steps_convnext_tiny.untrained': _cfg(),
    'steps_convnext_small.untrained': _cfg(),
    'steps_convnext_base.untrained': _cfg(),
    'test_steps_convnext.untrained': _cfg(input_size=(3, 64, 64), pool_size=(2, 2)),
})


@register_model
def steps_convnext_tiny(pretrained: bool = False, **kwargs) -> StepsConvNeXt:
    """Steps-ConvNeXt-T: stage 3 192 x6, 272 x3, 384 x6; stage 4 192 x2, 272 x1, 384 x1, 544 x1, 768 x2."""
    model_args = dict(depths=(3, 3, 9, 3), dims=(96, 192, 384, 768), num_steps=(1, 1, 3, 5), steps_move=(0, 0, 3, 1))
    return _create_steps_convnext('steps_convnext_tiny', pretrained, **dict(model_args, **kwargs))


@register_model
def steps_convnext_small(pretrained: bool = False, **kwargs) -> StepsConvNeXt:
    """Steps-ConvNeXt-S: stage 3 192 x6, 272 x3, 384 x24; stage 4 as Steps-ConvNeXt-T."""
    model_args = dict(depths=(3, 3, 27, 3), dims=(96, 192, 384, 768), num_steps=(1, 1, 3, 5), steps_move=(0, 0, 3, 1))
    return _create_steps_convnext('steps_convnext_small', pretrained, **dict(model_args, **kwargs))


@register_model
def steps_convnext_base(pretrained: bool = False, **kwargs) -> StepsConvNeXt:
    """Steps-ConvNeXt-B: stage 3 256 x6, 360 x3, 512 x24; stage 4 256 x2, 360 x1, 512 x1, 728 x1, 1024 x2."""
    model_args = dict(
        depths=(3, 3, 27, 3), dims=(128, 256, 512, 1024), num_steps=(1, 1, 3, 5), steps_move=(0, 0, 3, 1))
    return _create_steps_convnext('steps_convnext_base', pretrained, **dict(model_args, **kwargs))


@register_model
def test_steps_convnext(pretrained: bool = False, **kwargs) -> StepsConvNeXt:
    """Tiny Steps-ConvNeXt for tests: stage 3 16 x2, 24 x1, 32 x2; stage 4 32 x2, 48 x1, 64 x1."""
    model_args = dict(
        depths=(1, 1, 3, 2), dims=(8, 16, 32, 64), num_steps=(1, 1, 3, 3), steps_move=(0, 0, 1, 1),
        ls_init_value=1.0)
    return _create_steps_convnext('test_steps_convnext', pretrained, **dict(model_args, **kwargs))
