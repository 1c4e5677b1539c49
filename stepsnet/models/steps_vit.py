"""Steps-DeiT: a Vision Transformer whose whole block trunk is a Step by Step Network.

Step by Step Network (StepsNet), arXiv:2511.14329, Table 13. The trunk of ``depth`` blocks at ``embed_dim`` becomes
``num_steps`` steps derived by :func:`stepsnet.steps.plan_steps` (DeiT: 3 steps, 6 blocks moved per
substitution, widths rounded to multiples of 8 that the step's head count divides), e.g. DeiT-S 384/H6 x12 ->
192/H3 x12, 272/H4 x6, 384/H6 x6. Patch embedding, class token, position embedding, final norm and head are
timm's ``VisionTransformer`` at the full width; the blocks are timm's ``Block`` at each step's width. The token
sequence (class token included) is split along the embedding dimension (channel axis -1).
"""
from typing import Any, Dict, List, Mapping, Optional, Tuple, Type, Union

import torch
import torch.nn as nn
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import LayerNorm, LayerType, Mlp, calculate_drop_path_rates, get_act_layer, get_norm_layer, to_2tuple
from timm.models import generate_default_cfgs, register_model
from timm.models._features import feature_take_indices
from timm.models.vision_transformer import Attention, Block, VisionTransformer

from stepsnet.models._builder import build_steps_model
from stepsnet.steps import StepPlan, Steps, plan_steps

__all__ = ['StepsVisionTransformer']


@torch.fx.wrap  # a leaf call in FX graphs, where the mask arguments are placeholders
def _check_no_attn_mask(attn_mask: Optional[torch.Tensor], is_causal: bool) -> None:
    if attn_mask is not None or is_causal:
        raise ValueError('Steps-ViT does not take attention masks (blocks of different widths share no mask API)')


class StepsVisionTransformer(VisionTransformer):
    """timm ``VisionTransformer`` with a Step by Step block trunk (``self.blocks`` is a :class:`Steps`).

    Args:
        embed_dim: Trunk width (the last step's width).
        depth: Baseline block count; the Steps trunk has ``depth + (num_steps - 1) * steps_move`` blocks.
        num_heads: Baseline heads; each step's heads come from the planner (or ``step_heads``).
        num_steps: Number of steps (1 gives the plain ViT).
        steps_move: Blocks moved per substitution (``k``).
        step_heads: Optional explicit heads per step width, e.g. ``{272: 4}``.
        drop_path_rate: Stochastic depth, linear over the real block sequence.
        weight_init: timm ViT weight init mode.
        fix_init: timm's per-layer rescale of output projections (over the real block sequence).
        **kwargs: Everything else timm's ``VisionTransformer`` takes.
    """

    def __init__(
            self,
            embed_dim: int = 384,
            depth: int = 12,
            num_heads: int = 6,
            num_steps: int = 3,
            steps_move: int = 6,
            step_heads: Optional[Mapping[int, int]] = None,
            mlp_ratio: float = 4.,
            qkv_bias: bool = True,
            qk_norm: bool = False,
            proj_bias: bool = True,
            init_values: Optional[float] = None,
            proj_drop_rate: float = 0.,
            attn_drop_rate: float = 0.,
            drop_path_rate: float = 0.,
            weight_init: str = '',
            fix_init: bool = False,
            norm_layer: Optional[LayerType] = None,
            act_layer: Optional[LayerType] = None,
            block_fn: Type[nn.Module] = Block,
            mlp_layer: Type[nn.Module] = Mlp,
            attn_layer: LayerType = Attention,
            **kwargs: Any,
    ):
        if not (kwargs.get('dynamic_img_size') or kwargs.get('dynamic_img_pad')):
            img, patch = to_2tuple(kwargs.get('img_size', 224)), to_2tuple(kwargs.get('patch_size', 16))
            if any(i % p for i, p in zip(img, patch)):
                raise ValueError(
                    f'image size {tuple(img)} is not divisible by the patch size {tuple(patch)}; a fixed-size model '
                    'expects a multiple of the patch size (or pass dynamic_img_size=True)')
        super().__init__(
            embed_dim=embed_dim, depth=0, num_heads=num_heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias,
            qk_norm=qk_norm, proj_bias=proj_bias, init_values=init_values, proj_drop_rate=proj_drop_rate,
            attn_drop_rate=attn_drop_rate, norm_layer=norm_layer, act_layer=act_layer, block_fn=block_fn,
            mlp_layer=mlp_layer, attn_layer=attn_layer, weight_init='skip', **kwargs,
        )
        dd = {'device': kwargs.get('device'), 'dtype': kwargs.get('dtype')}
        norm_layer = get_norm_layer(norm_layer) or LayerNorm
        act_layer = get_act_layer(act_layer) or nn.GELU
        self.plan: StepPlan = plan_steps(
            embed_dim, depth, num_steps, steps_move, heads=num_heads, multiple_of=8, step_heads=step_heads)
        dpr = calculate_drop_path_rates(drop_path_rate, self.plan.num_blocks)
        block_heads = self.plan.block_heads()

        def make_block(width: int, index: int) -> nn.Module:
            return block_fn(
                dim=width, num_heads=block_heads[index], mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, qk_norm=qk_norm,
                proj_bias=proj_bias, init_values=init_values, proj_drop=proj_drop_rate, attn_drop=attn_drop_rate,
                drop_path=dpr[index], norm_layer=norm_layer, act_layer=act_layer, mlp_layer=mlp_layer,
                attn_layer=attn_layer, depth=index, **dd,
            )

        self.blocks = Steps(self.plan, make_block, dim=-1)
        reduction = self.patch_embed.feat_ratio() if hasattr(self.patch_embed, 'feat_ratio') else 16
        self.feature_info = [
            dict(module=f'blocks.{i}', num_chs=embed_dim, reduction=reduction) for i in range(len(self.blocks))]
        self.weight_init_mode = 'reset' if weight_init == 'skip' else weight_init
        self.fix_init = fix_init
        if weight_init != 'skip':
            self.init_weights(needs_reset=False)

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        super().set_grad_checkpointing(enable)
        self.blocks.grad_checkpointing = enable

    def forward_features(
            self,
            x: torch.Tensor,
            attn_mask: Optional[torch.Tensor] = None,
            is_causal: bool = False,
    ) -> torch.Tensor:
        _check_no_attn_mask(attn_mask, is_causal)
        x = self.patch_embed(x)
        x = self._pos_embed(x)
        x = self.patch_drop(x)
        x = self.norm_pre(x)
        x = self.blocks(x)
        return self.norm(x)

    def forward_intermediates(
            self,
            x: torch.Tensor,
            indices: Optional[Union[int, List[int]]] = None,
            return_prefix_tokens: bool = False,
            norm: bool = False,
            stop_early: bool = False,
            output_fmt: str = 'NCHW',
            intermediates_only: bool = False,
            output_dict: bool = False,
            **kwargs: Any,
    ) -> Union[List[torch.Tensor], Tuple[torch.Tensor, List[torch.Tensor]], Dict[str, Any]]:
        """Features after the blocks in ``indices`` (0 .. num_blocks - 1 over the real block sequence).

        Each intermediate is the full-width trunk state (the block's output concatenated with the chunks not
        consumed yet), so every feature has ``embed_dim`` channels. Arguments as timm's ViT.
        """
        if output_fmt not in ('NCHW', 'NLC'):
            raise ValueError(f"output_fmt must be 'NCHW' or 'NLC', got {output_fmt!r}")
        take_indices, max_index = feature_take_indices(len(self.blocks), indices)
        B, _, height, width = x.shape
        x = self.patch_embed(x)
        x = self._pos_embed(x)
        x = self.patch_drop(x)
        x = self.norm_pre(x)
        x, intermediates = self.blocks.forward_intermediates(x, take_indices, stop_early=stop_early)
        if norm:
            intermediates = [self.norm(y) for y in intermediates]

        prefix_tokens = None
        if self.num_prefix_tokens:
            prefix_tokens = [y[:, :self.num_prefix_tokens] for y in intermediates]
            intermediates = [y[:, self.num_prefix_tokens:] for y in intermediates]
        if output_fmt == 'NCHW':
            H, W = self.patch_embed.dynamic_feat_size((height, width))
            intermediates = [y.reshape(B, H, W, -1).permute(0, 3, 1, 2).contiguous() for y in intermediates]

        if output_dict:
            result: Dict[str, Any] = {'image_intermediates': intermediates}
            if prefix_tokens is not None and return_prefix_tokens:
                result['image_intermediates_prefix'] = prefix_tokens
            if not intermediates_only:
                result['image_features'] = self.norm(x)
            return result
        if return_prefix_tokens and prefix_tokens is not None:
            intermediates = list(zip(intermediates, prefix_tokens))
        if intermediates_only:
            return intermediates
        return self.norm(x), intermediates

    def prune_intermediate_layers(
            self,
            indices: Union[int, List[int]] = 1,
            prune_norm: bool = False,
            prune_head: bool = True,
    ) -> List[int]:
        take_indices, max_index = feature_take_indices(len(self.blocks), indices)
        self.blocks.truncate(max_index + 1)
        if prune_norm:
            self.norm = nn.Identity()
        if prune_head:
            self.fc_norm = nn.Identity()
            self.reset_classifier(0, '')
        return take_indices


def _create_steps_vit(variant: str, pretrained: bool = False, **kwargs) -> StepsVisionTransformer:
    out_indices = kwargs.pop('out_indices', 3)
    return build_steps_model(
        StepsVisionTransformer, variant, pretrained,
        feature_cfg=dict(out_indices=out_indices, feature_cls='getter'),
        **kwargs,
    )


def _cfg(url: str = '', **kwargs) -> Dict[str, Any]:
    return {
        'url': url,
        'num_classes': 1000, 'input_size': (3, 224, 224), 'pool_size': None,
        'crop_pct': .875, 'interpolation': 'bicubic', 'fixed_input_size': True,
        'mean': IMAGENET_DEFAULT_MEAN, 'std': IMAGENET_DEFAULT_STD,
        'first_conv': 'patch_embed.proj', 'classifier': 'head',
        'paper_ids': 'arXiv:2511.14329', 'paper_name': 'Step by Step Network',
        'license': 'apache-2.0',
        **kwargs,
    }


default_cfgs = generate_default_cfgs({
    'steps_deit_tiny_patch16_224.untrained': _cfg(),
    'steps_deit_small_patch16_224.untrained': _cfg(),
    'steps_deit_base_patch16_224.untrained': _cfg(),
    'test_steps_vit.untrained': _cfg(input_size=(3, 32, 32)),
})


@register_model
def steps_deit_tiny_patch16_224(pretrained: bool = False, **kwargs) -> StepsVisionTransformer:
    """Steps-DeiT-T: 96/H2 x12, 136/H2 x6, 192/H3 x6 (24 blocks, 122 layers)."""
    model_args = dict(patch_size=16, embed_dim=192, depth=12, num_heads=3, num_steps=3, steps_move=6)
    return _create_steps_vit('steps_deit_tiny_patch16_224', pretrained, **dict(model_args, **kwargs))


@register_model
def steps_deit_small_patch16_224(pretrained: bool = False, **kwargs) -> StepsVisionTransformer:
    """Steps-DeiT-S: 192/H3 x12, 272/H4 x6, 384/H6 x6 (24 blocks, 122 layers)."""
    model_args = dict(patch_size=16, embed_dim=384, depth=12, num_heads=6, num_steps=3, steps_move=6)
    return _create_steps_vit('steps_deit_small_patch16_224', pretrained, **dict(model_args, **kwargs))


@register_model
def steps_deit_base_patch16_224(pretrained: bool = False, **kwargs) -> StepsVisionTransformer:
    """Steps-DeiT-B: 384/H6 x12, 544/H8 x6, 768/H12 x6 (24 blocks, 122 layers)."""
    model_args = dict(patch_size=16, embed_dim=768, depth=12, num_heads=12, num_steps=3, steps_move=6)
    return _create_steps_vit('steps_deit_base_patch16_224', pretrained, **dict(model_args, **kwargs))


@register_model
def test_steps_vit(pretrained: bool = False, **kwargs) -> StepsVisionTransformer:
    """Tiny Steps-ViT for tests: 32/H2 x4, 48/H2 x2, 64/H4 x2 on 32x32 images with 8x8 patches."""
    model_args = dict(
        img_size=32, patch_size=8, embed_dim=64, depth=4, num_heads=4, num_steps=3, steps_move=2, mlp_ratio=2.)
    return _create_steps_vit('test_steps_vit', pretrained, **dict(model_args, **kwargs))
