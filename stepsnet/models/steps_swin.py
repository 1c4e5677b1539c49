"""Steps-Swin: Swin Transformer with stages 3 and 4 run as Step by Step Networks.

Step by Step Network (StepsNet), arXiv:2511.14329, Table 14. Each converted stage keeps timm's full-width patch
merging; its blocks become an n-step trunk derived by :func:`stepsnet.steps.plan_steps` (widths are multiples of 8
that the step's head count divides), e.g. Swin-T stage 3 384/H12 x6 -> 192/H6 x6, 272/H8 x3, 384/H12 x3 and
stage 4 768/H24 x2 -> 192/H6 x4, 272/H8 x2, 384/H12 x2, 544/H16 x2, 768/H24 x0. The blocks are timm's
``SwinTransformerBlock`` built at each step's width and head count, so every block has its own relative-position
bias table (one column per head) and its own shifted-window attention mask. The trunk runs on the stage's NHWC
map and splits it along the last axis.

Shifted windows: inside a converted stage, regular (W-MSA) and shifted (SW-MSA) windows alternate along the real
block sequence in execution order, across step boundaries: block ``j`` of the stage's trunk is shifted when ``j``
is odd. A step with an odd block count therefore hands the next step a trunk that starts with a shifted block
(Swin-T stage 3: blocks 0-5 at 192, 6-8 at 272 (W, SW, W), 9-11 at 384 (SW, W, SW)). As in timm, a block whose
window covers the whole feature map does not shift (Swin stage 4 at 224x224 input: 7x7 map, 7x7 window).

Everything else (patch embedding, stages 1-2, patch merging, final norm, head, dynamic input sizes,
``set_input_size``, ``forward_intermediates``) is timm's ``SwinTransformer``.
"""
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Type, Union

import torch
import torch.nn as nn
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import DropPath, calculate_drop_path_rates, to_2tuple, to_ntuple
from timm.models import generate_default_cfgs, register_model
from timm.models.swin_transformer import (
    SwinTransformer,
    SwinTransformerBlock,
    checkpoint_filter_fn,
    resolve_stage_window_sizes,
)

from stepsnet.models._builder import build_steps_model
from stepsnet.steps import StepPlan, Steps, plan_steps

__all__ = ['StepsSwinTransformer']

_int_or_tuple_2_t = Union[int, Tuple[int, int]]


def _check_img_size(img_size: _int_or_tuple_2_t, patch_size: _int_or_tuple_2_t) -> None:
    img, patch = to_2tuple(img_size), to_2tuple(patch_size)
    for i, p in zip(img, patch):
        if i % p:
            raise ValueError(
                f'image size {tuple(img)} is not divisible by the patch size {tuple(patch)}; a fixed-size model '
                'expects a multiple of the patch size (or pass dynamic_img_size=True / strict_img_size=False)')


@torch.fx.wrap  # a leaf call in FX graphs (symbolic tracing cannot branch on a shape)
def _check_input_size(x: torch.Tensor, img_size: Tuple[int, int]) -> None:
    if x.shape[-2] != img_size[0] or x.shape[-1] != img_size[1]:
        raise ValueError(
            f'input of shape ({", ".join([str(d) for d in x.shape])}) does not match the fixed image size '
            f'{img_size}; expected that size (or create the model with dynamic_img_size=True, or call '
            'set_input_size())')


class StepsSwinTransformer(SwinTransformer):
    """timm ``SwinTransformer`` whose stages may be Step by Step trunks (``layers[i].blocks`` is a :class:`Steps`).

    Args:
        img_size: Input image size (must be a multiple of ``patch_size`` when the input size is fixed).
        patch_size: Patch size.
        embed_dim: Width of stage 1 (doubled per stage) or one width per stage.
        depths: Baseline blocks per stage.
        num_heads: Baseline heads per stage; each step's heads come from the planner (or ``step_heads``).
        num_steps: Steps per stage; 1 keeps the stage as in the baseline.
        steps_move: Blocks moved per substitution in each converted stage (``k`` of the planner).
        step_heads: Optional explicit heads per step width for each stage, e.g. ``(None, None, {272: 8}, None)``.
        window_size: Window size, for all stages or one per stage.
        always_partition: Always partition into windows and shift, even when a window covers the whole map.
        strict_img_size: Require inputs of ``img_size``.
        dynamic_img_size: Accept any input size (attention masks are built per forward).
        mlp_ratio: MLP expansion ratio, for all stages or one per stage.
        qkv_bias: Bias in the qkv projection.
        proj_drop_rate: Projection dropout.
        attn_drop_rate: Attention dropout.
        drop_path_rate: Stochastic depth, linear over the real block sequence (all blocks of all stages, in order).
        norm_layer: Normalization layer.
        weight_init: timm Swin weight init mode.
        **kwargs: Everything else timm's ``SwinTransformer`` takes (``num_classes``, ``in_chans``, ``global_pool``).
    """

    def __init__(
            self,
            img_size: _int_or_tuple_2_t = 224,
            patch_size: int = 4,
            embed_dim: Union[int, Sequence[int]] = 96,
            depths: Sequence[int] = (2, 2, 6, 2),
            num_heads: Sequence[int] = (3, 6, 12, 24),
            num_steps: Sequence[int] = (1, 1, 3, 5),
            steps_move: Sequence[int] = (0, 0, 3, 2),
            step_heads: Optional[Sequence[Optional[Mapping[int, int]]]] = None,
            head_dim: Optional[int] = None,
            window_size: Union[_int_or_tuple_2_t, Sequence[_int_or_tuple_2_t]] = 7,
            always_partition: bool = False,
            strict_img_size: bool = True,
            dynamic_img_size: bool = False,
            mlp_ratio: Union[float, Sequence[float]] = 4.,
            qkv_bias: bool = True,
            proj_drop_rate: float = 0.,
            attn_drop_rate: float = 0.,
            drop_path_rate: float = 0.1,
            norm_layer: Union[str, Type[nn.Module]] = nn.LayerNorm,
            weight_init: str = '',
            **kwargs: Any,
    ):
        depths, num_heads = tuple(depths), tuple(num_heads)
        num_steps, steps_move = tuple(num_steps), tuple(steps_move)
        n = len(depths)
        step_heads = tuple(step_heads) if step_heads is not None else (None,) * n
        if not len(num_heads) == len(num_steps) == len(steps_move) == len(step_heads) == n:
            raise ValueError(
                f'depths {depths}, num_heads {num_heads}, num_steps {num_steps}, steps_move {steps_move} and '
                f'step_heads {step_heads} must have one entry per stage')
        if strict_img_size and not dynamic_img_size:
            _check_img_size(img_size, patch_size)
        dims = list(embed_dim) if isinstance(embed_dim, (tuple, list)) else [int(embed_dim * 2 ** i) for i in range(n)]
        # plan first, so that a bad plan fails before anything is built
        plans: Dict[int, StepPlan] = {}
        for i, (dim, d, h, s, k, sh) in enumerate(zip(dims, depths, num_heads, num_steps, steps_move, step_heads)):
            if s <= 1:
                continue
            if head_dim is not None:
                raise ValueError(f'head_dim={head_dim} is not supported with Steps stages; expected None')
            try:
                plans[i] = plan_steps(dim, d, s, k, heads=h, multiple_of=8, step_heads=sh)
            except ValueError as e:
                raise ValueError(f'stage {i + 1} ({dim}/H{h} x{d}, {s} steps): {e}') from e

        dd = {'device': kwargs.get('device'), 'dtype': kwargs.get('dtype')}
        base_depths = tuple(0 if i in plans else d for i, d in enumerate(depths))
        super().__init__(
            img_size=img_size, patch_size=patch_size, embed_dim=embed_dim, depths=base_depths, num_heads=num_heads,
            head_dim=head_dim, window_size=window_size, always_partition=always_partition,
            strict_img_size=strict_img_size, dynamic_img_size=dynamic_img_size, mlp_ratio=mlp_ratio,
            qkv_bias=qkv_bias, proj_drop_rate=proj_drop_rate, attn_drop_rate=attn_drop_rate, drop_path_rate=0.,
            norm_layer=norm_layer, weight_init='skip', **kwargs,
        )
        self.num_steps = num_steps
        self.plans = {}  # stage name -> StepPlan (plain Python: TorchScript leaves it out)
        window_sizes = resolve_stage_window_sizes(window_size, n)
        mlp_ratios = to_ntuple(n)(mlp_ratio)
        dynamic_mask = not self.patch_embed.strict_img_size
        for i, plan in plans.items():
            stage = self.layers[i]
            block_heads = plan.block_heads()
            shift = tuple(w // 2 for w in window_sizes[i])

            def make_block(width: int, index: int, _stage=stage, _heads=block_heads, _i=i, _shift=shift) -> nn.Module:
                return SwinTransformerBlock(
                    dim=width, input_resolution=_stage.output_resolution, num_heads=_heads[index],
                    window_size=window_sizes[_i], shift_size=0 if index % 2 == 0 else _shift,
                    always_partition=always_partition, dynamic_mask=dynamic_mask, mlp_ratio=mlp_ratios[_i],
                    qkv_bias=qkv_bias, proj_drop=proj_drop_rate, attn_drop=attn_drop_rate,
                    norm_layer=norm_layer, **dd,
                )

            stage.blocks = Steps(plan, make_block, dim=-1)
            stage.depth = plan.num_blocks
            self.plans[f'layers.{i}'] = plan

        # stochastic depth along the real (deeper) sequence of blocks
        blocks = [m for m in self.modules() if isinstance(m, SwinTransformerBlock)]
        for blk, rate in zip(blocks, calculate_drop_path_rates(drop_path_rate, len(blocks))):
            blk.drop_path1 = DropPath(rate) if rate > 0. else nn.Identity()
            blk.drop_path2 = DropPath(rate) if rate > 0. else nn.Identity()

        self.weight_init_mode = 'reset' if weight_init == 'skip' else weight_init
        if weight_init != 'skip':
            self.init_weights(needs_reset=False)

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Checkpoint block by block; in a converted stage the :class:`Steps` trunk does it itself.

        timm's stage checkpoints its ``blocks`` as a plain sequence (``checkpoint_seq``), which would skip the
        trunk's split and concat, so converted stages leave their own flag off and set the trunk's.
        """
        for stage in self.layers:
            if isinstance(stage.blocks, Steps):
                stage.blocks.grad_checkpointing = enable
                stage.grad_checkpointing = False
            else:
                stage.grad_checkpointing = enable

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if self.patch_embed.strict_img_size:
            _check_input_size(x, self.patch_embed.img_size)
        # timm's SwinTransformer.forward_features, spelled out for TorchScript (which has no super())
        x = self.patch_embed(x)
        x = self.layers(x)
        return self.norm(x)


def _create_steps_swin(variant: str, pretrained: bool = False, **kwargs) -> StepsSwinTransformer:
    default_out_indices = tuple(range(len(kwargs.get('depths', (1, 1, 1, 1)))))
    out_indices = kwargs.pop('out_indices', default_out_indices)
    return build_steps_model(
        StepsSwinTransformer, variant, pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(flatten_sequential=True, out_indices=out_indices),
        **kwargs,
    )


def _cfg(url: str = '', **kwargs) -> Dict[str, Any]:
    return {
        'url': url,
        'num_classes': 1000, 'input_size': (3, 224, 224), 'pool_size': (7, 7),
        'crop_pct': .9, 'interpolation': 'bicubic', 'fixed_input_size': True,
        'mean': IMAGENET_DEFAULT_MEAN, 'std': IMAGENET_DEFAULT_STD,
        'first_conv': 'patch_embed.proj', 'classifier': 'head.fc',
        'paper_ids': 'arXiv:2511.14329', 'paper_name': 'Step by Step Network',
        'license': 'mit',
        **kwargs,
    }


default_cfgs = generate_default_cfgs({
    'steps_swin_tiny_patch4_window7_224.untrained': _cfg(),
    'steps_swin_small_patch4_window7_224.untrained': _cfg(),
    'steps_swin_base_patch4_window7_224.untrained': _cfg(),
    'test_steps_swin.untrained': _cfg(input_size=(3, 64, 64), pool_size=(2, 2)),
})


@register_model
def steps_swin_tiny_patch4_window7_224(pretrained: bool = False, **kwargs) -> StepsSwinTransformer:
    """Steps-Swin-T: stage 3 192/H6 x6, 272/H8 x3, 384/H12 x3; stage 4 192/H6 x4 .. 544/H16 x2, 768/H24 x0."""
    model_args = dict(
        patch_size=4, window_size=7, embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24),
        num_steps=(1, 1, 3, 5), steps_move=(0, 0, 3, 2))
    return _create_steps_swin('steps_swin_tiny_patch4_window7_224', pretrained, **dict(model_args, **kwargs))


@register_model
def steps_swin_small_patch4_window7_224(pretrained: bool = False, **kwargs) -> StepsSwinTransformer:
    """Steps-Swin-S: stage 3 192/H6 x6, 272/H8 x3, 384/H12 x15; stage 4 as Steps-Swin-T."""
    model_args = dict(
        patch_size=4, window_size=7, embed_dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24),
        num_steps=(1, 1, 3, 5), steps_move=(0, 0, 3, 2))
    return _create_steps_swin('steps_swin_small_patch4_window7_224', pretrained, **dict(model_args, **kwargs))


@register_model
def steps_swin_base_patch4_window7_224(pretrained: bool = False, **kwargs) -> StepsSwinTransformer:
    """Steps-Swin-B: stage 3 256/H8 x6, 360/H12 x3, 512/H16 x15; stage 4 256/H8 x4 .. 720/H24 x2, 1024/H32 x0."""
    model_args = dict(
        patch_size=4, window_size=7, embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32),
        num_steps=(1, 1, 3, 5), steps_move=(0, 0, 3, 2))
    return _create_steps_swin('steps_swin_base_patch4_window7_224', pretrained, **dict(model_args, **kwargs))


@register_model
def test_steps_swin(pretrained: bool = False, **kwargs) -> StepsSwinTransformer:
    """Tiny Steps-Swin for tests: 64x64 input, 2x2 windows, stage 3 32/H2 x2, 48/H2 x1, 64/H4 x2 (shifted)."""
    model_args = dict(
        img_size=64, patch_size=4, window_size=2, embed_dim=16, depths=(1, 1, 3, 2), num_heads=(1, 2, 4, 8),
        num_steps=(1, 1, 3, 3), steps_move=(0, 0, 1, 1), mlp_ratio=2.)
    return _create_steps_swin('test_steps_swin', pretrained, **dict(model_args, **kwargs))
