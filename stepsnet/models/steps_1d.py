"""Residual trunks for 1-D signals and their Step by Step twins, sized for MNIST-1D on a CPU.

Step by Step Network (StepsNet), arXiv:2511.14329, on MNIST-1D (Greydanus & Kobak, ICML 2024, arXiv:2011.14439):
signals of 40 samples, read as ``(1, 1, 40)`` tensors (one channel, one pixel high). Both families here pair a
residual baseline with its Steps twin built by the one mechanism, :func:`stepsnet.steps.plan_steps` and
:class:`stepsnet.steps.Steps`, with the pairing the paper uses for that family (Table 1: equal parameters and FLOPs):

* **1-D ResNet** (:class:`StepsResNet1d`): a stem convolution, then four stages of ``BasicBlock1d``
  (Conv1d-BN-ReLU-Conv1d-BN plus the shortcut, then ReLU) at one width each, strides 1, 2, 2, 2 (40, 20, 10 and 5
  samples). The twin converts stages 3 and 4 as :class:`stepsnet.models.steps_resnet.StepsResNet` does for
  ResNet-18: each keeps its strided first block and the rest becomes a 5- / 7-step trunk, one block moved per
  substitution, widths floored (128 -> 90, 64, 45, 32, 22, 16), on channel axis 1.
* **1-D ViT** (timm's ``VisionTransformer`` through :class:`stepsnet.models.steps_vit.StepsVisionTransformer`):
  ``(1, 4)`` patches of the ``(1, 40)`` image give 10 tokens plus the class token. The residual trunk and its twin
  are :func:`stepsnet.models.factory.deit_trunk_config` with ``pairing='compute'``: a one-step plan (exactly timm's
  block sequence) and the 3-step ``[w/2 x L, w/sqrt2 x L/2, w x L/2]`` twin.

Entrypoints: ``mnist1d_resnet`` / ``mnist1d_steps_resnet`` and ``mnist1d_vit`` / ``mnist1d_steps_vit`` (and tiny
``test_mnist1d_*`` variants). They are named for the data set, not ``steps_*``: every ``steps_*`` / ``test_steps_*``
model of the project takes 3-channel square images, which these do not.
"""
from typing import Any, Dict, List, Optional, Sequence, Type

import torch
import torch.nn as nn
from timm.layers import DropPath, calculate_drop_path_rates, get_act_layer
from timm.models import generate_default_cfgs, register_model

from stepsnet.models._builder import build_steps_model
from stepsnet.models.steps_vit import StepsVisionTransformer, _create_steps_vit
from stepsnet.steps import StepPlan, Steps, checkpoint_stages, plan_steps

__all__ = ['BasicBlock1d', 'StepsResNet1d', 'ToSignal']

MNIST1D_INPUT_SIZE = (1, 1, 40)  # (channels, height, width) of a signal, as stepsnet.data.mnist1d yields it


class BasicBlock1d(nn.Module):
    """timm's ``BasicBlock`` on a 1-D signal: Conv1d-BN-ReLU-Conv1d-BN, plus the shortcut, then ReLU.

    The shortcut is the identity, or a strided 1x1 convolution and BN where the width or length changes (the
    first block of a stage), as in ResNet.

    Args:
        in_chs: Input channels.
        out_chs: Output channels (the block's width).
        stride: Stride of the first convolution and of the shortcut projection.
        kernel_size: Odd kernel size of both convolutions (padded to keep the length).
        drop_path: Stochastic depth rate of the residual branch.
        act_layer: Activation class.
        norm_layer: Normalisation class (``nn.BatchNorm1d``).
    """

    def __init__(
            self,
            in_chs: int,
            out_chs: int,
            stride: int = 1,
            kernel_size: int = 3,
            drop_path: float = 0.,
            act_layer: Type[nn.Module] = nn.ReLU,
            norm_layer: Type[nn.Module] = nn.BatchNorm1d,
            device: Any = None,
            dtype: Any = None,
    ):
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f'kernel_size must be odd (a centred kernel keeps the length), got {kernel_size}')
        dd = {'device': device, 'dtype': dtype}
        pad = kernel_size // 2
        self.conv1 = nn.Conv1d(in_chs, out_chs, kernel_size, stride, pad, bias=False, **dd)
        self.bn1 = norm_layer(out_chs, **dd)
        self.act1 = act_layer(inplace=True)
        self.conv2 = nn.Conv1d(out_chs, out_chs, kernel_size, 1, pad, bias=False, **dd)
        self.bn2 = norm_layer(out_chs, **dd)
        self.drop_path = DropPath(drop_path) if drop_path > 0. else nn.Identity()
        self.act2 = act_layer(inplace=True)
        self.downsample: Optional[nn.Module] = None
        if stride != 1 or in_chs != out_chs:
            self.downsample = nn.Sequential(
                nn.Conv1d(in_chs, out_chs, 1, stride, bias=False, **dd), norm_layer(out_chs, **dd))

    def zero_init_last(self) -> None:
        """Zero the last BN's scale, so that the block starts as its shortcut (timm's ResNet default)."""
        nn.init.zeros_(self.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.conv1(x)
        x = self.bn1(x)
        x = self.act1(x)
        x = self.conv2(x)
        x = self.bn2(x)
        x = self.drop_path(x)
        if self.downsample is not None:
            shortcut = self.downsample(shortcut)
        return self.act2(x + shortcut)


@torch.fx.wrap  # a leaf call in FX graphs (symbolic tracing cannot branch on a shape)
def _as_signal(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, L)`` as it is; ``(B, C, 1, L)`` (a signal as a one-pixel-high image) without its height axis."""
    if x.dim() == 4 and x.shape[2] == 1:
        return x.squeeze(2)
    if x.dim() != 3:
        raise ValueError(f'a 1-D model expects a (B, C, L) signal or a (B, C, 1, L) image of height 1, got a tensor of '
                         f'shape {list(x.shape)}')
    return x


class ToSignal(nn.Module):
    """The model's first child: a ``(B, C, 1, L)`` image of height 1 becomes the ``(B, C, L)`` signal (timm's
    ``features_only`` wrappers run the children in order, so the reshape must be one of them)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _as_signal(x)


class StepsResNet1d(nn.Module):
    """A ResNet for 1-D signals whose stages may be Step by Step trunks.

    A stage with ``num_steps == 1`` is a plain sequence of blocks (the residual baseline). A converted stage keeps
    its first (strided, width-changing) block; its other ``layers - 1`` blocks become the trunk
    ``plan_steps(width, layers - 1, num_steps, steps_move)`` (widths floored, as for the ResNets of the paper),
    run by :class:`stepsnet.steps.Steps` on channel axis 1.

    Args:
        layers: Baseline blocks per stage, each stage's first block included.
        channels: Width of each stage.
        num_steps: Steps per stage; 1 keeps the stage as in the baseline.
        steps_move: Blocks moved per substitution in each converted stage (``k`` of the planner).
        in_chans: Input channels (1 for MNIST-1D).
        num_classes: Classes (0: no classifier, the pooled features).
        stem_width: Width of the stem convolution (default: the first stage's width).
        stem_kernel_size: Kernel of the stem convolution (stride 1: a 40-sample signal needs no early downsampling).
        kernel_size: Kernel of the block convolutions.
        global_pool: ``'avg'``, ``'max'`` or ``''`` (no pooling).
        drop_rate: Dropout before the classifier.
        drop_path_rate: Stochastic depth, linear over the real block sequence (all blocks, in order).
        zero_init_last: Zero-init the last BN of every residual branch.
        act_layer: Activation (name or class).
        norm_layer: Normalisation class.
    """

    def __init__(
            self,
            layers: Sequence[int] = (2, 2, 2, 2),
            channels: Sequence[int] = (16, 32, 64, 128),
            num_steps: Sequence[int] = (1, 1, 1, 1),
            steps_move: Sequence[int] = (0, 0, 0, 0),
            in_chans: int = 1,
            num_classes: int = 10,
            stem_width: Optional[int] = None,
            stem_kernel_size: int = 3,
            kernel_size: int = 3,
            global_pool: str = 'avg',
            drop_rate: float = 0.,
            drop_path_rate: float = 0.,
            zero_init_last: bool = True,
            act_layer: Any = nn.ReLU,
            norm_layer: Type[nn.Module] = nn.BatchNorm1d,
            device: Any = None,
            dtype: Any = None,
    ):
        super().__init__()
        layers, channels = tuple(int(n) for n in layers), tuple(int(c) for c in channels)
        num_steps, steps_move = tuple(int(s) for s in num_steps), tuple(int(k) for k in steps_move)
        if not len(layers) == len(channels) == len(num_steps) == len(steps_move) >= 1:
            raise ValueError(
                f'layers {layers}, channels {channels}, num_steps {num_steps} and steps_move {steps_move} must have '
                'one entry per stage')
        if any(n < 1 for n in layers):
            raise ValueError(f'every stage needs at least one block, got layers {layers}')
        if global_pool not in ('avg', 'max', ''):
            raise ValueError(f"global_pool must be 'avg', 'max' or '', got {global_pool!r}")
        dd = {'device': device, 'dtype': dtype}
        act_layer = get_act_layer(act_layer) or nn.ReLU
        self.num_classes = num_classes
        self.global_pool = global_pool
        self.drop_rate = drop_rate
        self.grad_checkpointing = False
        self.num_steps = num_steps
        self.plans: Dict[str, StepPlan] = {}  # stage name -> plan of its Steps trunk (plain Python)

        stem_width = stem_width or channels[0]
        self.to_signal = ToSignal()
        self.conv1 = nn.Conv1d(in_chans, stem_width, stem_kernel_size, 1, stem_kernel_size // 2, bias=False, **dd)
        self.bn1 = norm_layer(stem_width, **dd)
        self.act1 = act_layer(inplace=True)
        self.feature_info = [dict(num_chs=stem_width, reduction=1, module='act1')]

        plans: List[Optional[StepPlan]] = []  # the trunk after each stage's first block (None: plain blocks)
        for i, (ch, n, s, k) in enumerate(zip(channels, layers, num_steps, steps_move)):
            try:
                plans.append(plan_steps(ch, n - 1, s, k) if s > 1 else None)
            except ValueError as err:
                raise ValueError(f'stage {i + 1} ({ch} x{n - 1} after its first block, {s} steps): {err}') from err
        # the real block sequence, in execution order: every stage's first block, then its (Steps) trunk
        real_blocks = [1 + (p.num_blocks if p is not None else n - 1) for p, n in zip(plans, layers)]
        dpr = calculate_drop_path_rates(drop_path_rate, sum(real_blocks))
        block_args = dict(kernel_size=kernel_size, act_layer=act_layer, norm_layer=norm_layer, **dd)
        in_chs, reduction, first, stages = stem_width, 1, 0, []
        for i, (ch, n, plan) in enumerate(zip(channels, layers, plans)):
            stride = 1 if i == 0 else 2
            reduction *= stride
            rates = dpr[first:first + real_blocks[i]]
            first += real_blocks[i]
            blocks: List[nn.Module] = [BasicBlock1d(in_chs, ch, stride, drop_path=rates[0], **block_args)]
            if plan is not None:
                self.plans[f'stages.{i}'] = plan

                def make_block(width: int, index: int, _rates: Sequence[float] = rates) -> nn.Module:
                    return BasicBlock1d(width, width, 1, drop_path=_rates[1 + index], **block_args)

                blocks.append(Steps(plan, make_block, dim=1, channels=ch))
            else:
                blocks += [BasicBlock1d(ch, ch, 1, drop_path=rates[j], **block_args) for j in range(1, n)]
            stages.append(nn.Sequential(*blocks))
            self.feature_info.append(dict(num_chs=ch, reduction=reduction, module=f'stages.{i}'))
            in_chs = ch
        self.stages = nn.Sequential(*stages)
        self.num_features = self.head_hidden_size = in_chs
        self.head_drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(in_chs, num_classes, **dd) if num_classes > 0 else nn.Identity()
        self.init_weights(zero_init_last=zero_init_last)

    @torch.jit.ignore
    def init_weights(self, zero_init_last: bool = True) -> None:
        """Kaiming-normal convolutions and unit BatchNorms (timm's ResNet init); optionally zero-init the last BNs."""
        for m in self.modules():
            if isinstance(m, nn.Conv1d):
                nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
            elif isinstance(m, nn.BatchNorm1d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_last:
            for m in self.modules():
                if isinstance(m, BasicBlock1d):
                    m.zero_init_last()

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> Dict[str, Any]:
        if coarse:
            return dict(stem=r'^conv1|bn1', blocks=r'^stages\.(\d+)')
        # converted stages: stages.N.0 is the strided first block, stages.N.1.J the J-th block of the Steps trunk
        return dict(stem=r'^conv1|bn1',
                    blocks=[(r'^stages\.(\d+)\.(\d+)\.(\d+)\.', None), (r'^stages\.(\d+)\.(\d+)', None)])

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable
        for m in self.modules():
            if isinstance(m, Steps):
                m.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        self.num_classes = num_classes
        if global_pool is not None:
            self.global_pool = global_pool
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    @torch.jit.ignore
    def _checkpointed_stages(self, x: torch.Tensor) -> torch.Tensor:
        return checkpoint_stages(self.stages, x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.to_signal(x)
        x = self.conv1(x)
        x = self.bn1(x)
        x = self.act1(x)
        if not torch.jit.is_scripting() and self.grad_checkpointing:
            return self._checkpointed_stages(x)
        return self.stages(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if self.global_pool == 'avg':
            x = x.mean(dim=-1)
        elif self.global_pool == 'max':
            x = x.amax(dim=-1)
        x = self.head_drop(x)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _create_resnet1d(variant: str, pretrained: bool = False, **kwargs) -> StepsResNet1d:
    return build_steps_model(StepsResNet1d, variant, pretrained, feature_cfg=dict(flatten_sequential=True), **kwargs)


def _vit1d_args(blocks: int, kind: str, width: int, heads: int, mlp_ratio: float) -> Dict[str, Any]:
    """The residual ViT trunk (``kind='residual'``) or its equal-compute Steps twin (``'steps'``) on ``(1, 40)``.

    The pairing is the one of the depth studies and the paper's Table 1, so it is read from
    :func:`stepsnet.models.factory.deit_trunk_config` itself rather than restated here.
    """
    from stepsnet.models.factory import deit_trunk_config  # the factory imports this module's package
    _, args = deit_trunk_config(blocks, kind, width, heads, img_size=MNIST1D_INPUT_SIZE[1:], patch_size=(1, 4),
                                pairing='compute', mlp_ratio=mlp_ratio)
    return args


def _create_vit1d(variant: str, pretrained: bool, model_args: Dict[str, Any], **kwargs) -> StepsVisionTransformer:
    return _create_steps_vit(variant, pretrained, **dict(model_args, **kwargs))


def _cfg(url: str = '', **kwargs) -> Dict[str, Any]:
    return {
        'url': url,
        'num_classes': 10, 'input_size': MNIST1D_INPUT_SIZE, 'pool_size': None,
        'crop_pct': 1.0, 'interpolation': '', 'fixed_input_size': False,
        'mean': (0.,), 'std': (1.,),  # the generator standardises the set itself
        'first_conv': 'conv1', 'classifier': 'fc',
        'paper_ids': 'arXiv:2511.14329', 'paper_name': 'Step by Step Network',
        'license': 'apache-2.0',
        **kwargs,
    }


_VIT = dict(first_conv='patch_embed.proj', classifier='head', fixed_input_size=True)

default_cfgs = generate_default_cfgs({
    'mnist1d_resnet.untrained': _cfg(),
    'mnist1d_steps_resnet.untrained': _cfg(),
    'mnist1d_resnet34.untrained': _cfg(),
    'mnist1d_steps_resnet34.untrained': _cfg(),
    'mnist1d_vit.untrained': _cfg(**_VIT),
    'mnist1d_steps_vit.untrained': _cfg(**_VIT),
    'test_mnist1d_resnet.untrained': _cfg(),
    'test_mnist1d_steps_resnet.untrained': _cfg(),
    'test_mnist1d_vit.untrained': _cfg(**_VIT),
    'test_mnist1d_steps_vit.untrained': _cfg(**_VIT),
})

# ResNet-18's layout at widths 16..128, and Steps-ResNet-18's plan rule for stages 3 and 4
_RESNET = dict(layers=(2, 2, 2, 2), channels=(16, 32, 64, 128))
_STEPS_RESNET = dict(num_steps=(1, 1, 5, 7), steps_move=(0, 0, 1, 1))
# ResNet-34's layout at the same widths, and Steps-ResNet-34's rule (stage 3: 5 steps moving 3 blocks; stage 4: 7, 1)
_RESNET34 = dict(layers=(3, 4, 6, 3), channels=(16, 32, 64, 128))
_STEPS_RESNET34 = dict(num_steps=(1, 1, 5, 7), steps_move=(0, 0, 3, 1))
_TINY_RESNET = dict(layers=(1, 1, 2, 2), channels=(8, 16, 32, 64))
_TINY_STEPS_RESNET = dict(num_steps=(1, 1, 3, 3), steps_move=(0, 0, 1, 1))
# width 80 keeps the twin's rounded widths (40, 56, 80) at the baseline's parameters (a multiple-of-8 width of
# 64 / sqrt2 = 45 would be 48: 3.8% more parameters)
_VIT_SIZE = dict(blocks=4, width=80, heads=4, mlp_ratio=2.)
_TINY_VIT_SIZE = dict(blocks=2, width=80, heads=4, mlp_ratio=1.)


@register_model
def mnist1d_resnet(pretrained: bool = False, **kwargs) -> StepsResNet1d:
    """1-D ResNet-18 layout for MNIST-1D: 16, 32, 64, 128 x2 blocks (8 blocks)."""
    return _create_resnet1d('mnist1d_resnet', pretrained, **dict(_RESNET, **kwargs))


@register_model
def mnist1d_steps_resnet(pretrained: bool = False, **kwargs) -> StepsResNet1d:
    """Its Steps twin: stages 3 / 4 as 16x2, 22, 32, 45, 64x0 / 16x2, 22, 32, 45, 64, 90, 128x0 (18 blocks)."""
    model_args = dict(_RESNET, **_STEPS_RESNET)
    return _create_resnet1d('mnist1d_steps_resnet', pretrained, **dict(model_args, **kwargs))


@register_model
def mnist1d_resnet34(pretrained: bool = False, **kwargs) -> StepsResNet1d:
    """1-D ResNet-34 layout for MNIST-1D: 16x3, 32x4, 64x6, 128x3 blocks (16 blocks)."""
    return _create_resnet1d('mnist1d_resnet34', pretrained, **dict(_RESNET34, **kwargs))


@register_model
def mnist1d_steps_resnet34(pretrained: bool = False, **kwargs) -> StepsResNet1d:
    """Its Steps twin: stages 3 / 4 as 16x6, 22x3, 32x3, 45x3, 64x2 / 16x2, 22, 32, 45, 64, 90, 128 (34 blocks)."""
    model_args = dict(_RESNET34, **_STEPS_RESNET34)
    return _create_resnet1d('mnist1d_steps_resnet34', pretrained, **dict(model_args, **kwargs))


@register_model
def mnist1d_vit(pretrained: bool = False, **kwargs) -> StepsVisionTransformer:
    """DeiT-like residual trunk for MNIST-1D: 80/H4 x4, MLP ratio 2, on 10 patches of 4 samples (one step)."""
    return _create_vit1d('mnist1d_vit', pretrained, _vit1d_args(kind='residual', **_VIT_SIZE), **kwargs)


@register_model
def mnist1d_steps_vit(pretrained: bool = False, **kwargs) -> StepsVisionTransformer:
    """Its equal-compute Steps twin: 40/H2 x4, 56/H2 x2, 80/H4 x2 (8 blocks)."""
    return _create_vit1d('mnist1d_steps_vit', pretrained, _vit1d_args(kind='steps', **_VIT_SIZE), **kwargs)


@register_model
def test_mnist1d_resnet(pretrained: bool = False, **kwargs) -> StepsResNet1d:
    """Tiny 1-D ResNet for tests: 8, 16, 32, 64 x1, 1, 2, 2 blocks."""
    return _create_resnet1d('test_mnist1d_resnet', pretrained, **dict(_TINY_RESNET, **kwargs))


@register_model
def test_mnist1d_steps_resnet(pretrained: bool = False, **kwargs) -> StepsResNet1d:
    """Its tiny Steps twin: stages 3 / 4 as 3-step trunks (16x2, 22, 32x0 / 32x2, 45, 64x0)."""
    model_args = dict(_TINY_RESNET, **_TINY_STEPS_RESNET)
    return _create_resnet1d('test_mnist1d_steps_resnet', pretrained, **dict(model_args, **kwargs))


@register_model
def test_mnist1d_vit(pretrained: bool = False, **kwargs) -> StepsVisionTransformer:
    """Tiny 1-D ViT for tests: 80/H4 x2, MLP ratio 1."""
    return _create_vit1d('test_mnist1d_vit', pretrained, _vit1d_args(kind='residual', **_TINY_VIT_SIZE), **kwargs)


@register_model
def test_mnist1d_steps_vit(pretrained: bool = False, **kwargs) -> StepsVisionTransformer:
    """Its tiny Steps twin: 40/H2 x2, 56/H2 x1, 80/H4 x1."""
    return _create_vit1d('test_mnist1d_steps_vit', pretrained, _vit1d_args(kind='steps', **_TINY_VIT_SIZE), **kwargs)
