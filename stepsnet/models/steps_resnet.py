"""Steps-ResNet: ResNet with stages 3 and 4 run as Step by Step Networks.

Step by Step Network (StepsNet), arXiv:2511.14329, Table 12. Each converted stage keeps the baseline's first,
strided (full-width, downsampling) block; the remaining blocks become an n-step trunk derived by
:func:`stepsnet.steps.plan_steps` (ResNet widths are floored: 512 -> 362, 256, 181, 128, 90, 64; for
Bottleneck blocks these are bottleneck widths and the feature widths are 4x). The blocks are timm's own
``BasicBlock`` / ``Bottleneck``; stem, stages 1-2, head, init and the whole timm API are timm's ``ResNet``.

Grouped bottlenecks (ResNeXt, ``cardinality > 1``) have a group width ``floor(planes * base_width / 64)``; flooring a
step's planes would shrink it (ResNeXt-50 32x4d: 90 planes give 5 channels per group instead of 5.6, 0.7% fewer
parameters). Their step widths are therefore the nearest multiple of ``64 / gcd(64, base_width)`` (times
``block_reduce_first``), which keeps every group whole: 64, 96, 128, 176, 256 for 32x4d. A group norm likewise
makes widths the nearest multiple of its group count (32 for ResNet-50-GN).
"""
import inspect
import math
from typing import Any, Dict, Optional, Sequence, Type, Union

import torch
import torch.nn as nn
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import DropPath, calculate_drop_path_rates, get_act_layer, get_norm_layer
from timm.models import generate_default_cfgs, register_model
from timm.models.resnet import BasicBlock, Bottleneck, ResNet

from stepsnet.models._builder import build_steps_model
from stepsnet.steps import StepPlan, Steps, checkpoint_stages, plan_steps

__all__ = ['StepsResNet']


def _width_multiple(cardinality: int, base_width: int, reduce_first: int, norm_layer: Any) -> Optional[int]:
    """The multiple a step's planes must be for its block to stay whole, or None when any width works.

    A grouped bottleneck has ``floor(planes * base_width / 64)`` channels per group (divided by ``reduce_first`` in
    its first conv), and a group norm needs channels in multiples of its groups.
    """
    multiple = 64 // math.gcd(64, base_width) * reduce_first if cardinality > 1 else 1
    try:
        groups = inspect.signature(norm_layer).parameters.get('num_groups')
    except (TypeError, ValueError):  # not introspectable: a norm without groups
        groups = None
    if groups is not None and isinstance(groups.default, int):
        multiple = math.lcm(multiple, groups.default)
    return multiple if multiple > 1 else None


class StepsResNet(ResNet):
    """timm ``ResNet`` whose stages may be Step by Step trunks.

    Args:
        block: timm residual block class (``BasicBlock`` or ``Bottleneck``).
        layers: Baseline blocks per stage, including each stage's first block.
        num_steps: Steps per stage; 1 keeps the stage as in the baseline.
        steps_move: Blocks moved per substitution in each converted stage (``k`` of the planner).
        channels: Baseline stage widths (bottleneck widths for ``Bottleneck``).
        drop_path_rate: Stochastic depth, linear over the real block sequence (all blocks, in order).
        zero_init_last: Zero-init the last norm of every residual branch (timm's default).
        **kwargs: Everything else timm's ``ResNet`` takes (``num_classes``, ``in_chans``, ``global_pool``, ...).
    """

    def __init__(
            self,
            block: Type[Union[BasicBlock, Bottleneck]],
            layers: Sequence[int],
            num_steps: Sequence[int] = (1, 1, 5, 7),
            steps_move: Sequence[int] = (0, 0, 1, 1),
            channels: Sequence[int] = (64, 128, 256, 512),
            drop_path_rate: float = 0.,
            zero_init_last: bool = True,
            **kwargs: Any,
    ):
        layers, num_steps, steps_move = tuple(layers), tuple(num_steps), tuple(steps_move)
        if not len(layers) == len(num_steps) == len(steps_move) == len(channels):
            raise ValueError(
                f'layers {layers}, num_steps {num_steps}, steps_move {steps_move} and channels {tuple(channels)} '
                'must have one entry per stage')
        # timm builds each converted stage's first (downsampling) block; the Steps trunk is added below
        base_layers = tuple(1 if s > 1 else n for n, s in zip(layers, num_steps))
        dd = {'device': kwargs.get('device'), 'dtype': kwargs.get('dtype')}
        super().__init__(block, base_layers, channels=tuple(channels), zero_init_last=zero_init_last, **kwargs)
        self.num_steps = num_steps
        self.plans = {}  # stage name -> StepPlan (plain Python: TorchScript leaves it out)

        block_kwargs = dict(
            cardinality=kwargs.get('cardinality', 1),
            base_width=kwargs.get('base_width', 64),
            reduce_first=kwargs.get('block_reduce_first', 1),
            act_layer=get_act_layer(kwargs.get('act_layer', nn.ReLU)),
            norm_layer=get_norm_layer(kwargs.get('norm_layer', nn.BatchNorm2d)),
            aa_layer=kwargs.get('aa_layer'),
            **(kwargs.get('block_args') or {}),
            **dd,
        )
        # widths that keep every grouped conv and group norm whole (None: any width, floored as in the paper)
        width_multiple = _width_multiple(
            kwargs.get('cardinality', 1), kwargs.get('base_width', 64), kwargs.get('block_reduce_first', 1),
            block_kwargs['norm_layer'])
        output_stride = kwargs.get('output_stride', 32)
        net_stride, dilation = 4, 1
        for i, (ch, n, s, k) in enumerate(zip(channels, layers, num_steps, steps_move)):
            stride = 1 if i == 0 else 2
            if net_stride >= output_stride:
                dilation *= stride
            else:
                net_stride *= stride
            if s <= 1:
                continue
            try:
                plan = plan_steps(ch, n - 1, s, k, multiple_of=width_multiple)
            except ValueError as err:
                raise ValueError(f'stage {i + 1} ({ch} x{n - 1} after its first block, {s} steps): {err}') from err
            e = block.expansion
            feature_plan = StepPlan(tuple(w * e for w in plan.widths), plan.depths)
            self.plans[f'layer{i + 1}'] = plan

            def make_block(width: int, index: int, _d: int = dilation, _e: int = e) -> nn.Module:
                return block(width, width // _e, first_dilation=_d, dilation=_d, **block_kwargs)

            getattr(self, f'layer{i + 1}').add_module('1', Steps(feature_plan, make_block, dim=1))

        # stochastic depth along the real (deeper) sequence of blocks
        blocks = [m for m in self.modules() if isinstance(m, (BasicBlock, Bottleneck))]
        for blk, rate in zip(blocks, calculate_drop_path_rates(drop_path_rate, len(blocks))):
            blk.drop_path = DropPath(rate) if rate > 0. else None
        self.init_weights(zero_init_last=zero_init_last)

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> Dict[str, Any]:
        if coarse:
            return dict(stem=r'^conv1|bn1|maxpool', blocks=r'^layer(\d+)')
        # converted stages: layerN.0 is the downsampling block, layerN.1.J the J-th block of the Steps trunk
        return dict(
            stem=r'^conv1|bn1|maxpool',
            blocks=[(r'^layer(\d+)\.(\d+)\.(\d+)\.', None), (r'^layer(\d+)\.(\d+)', None)],
        )

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable
        for m in self.modules():
            if isinstance(m, Steps):
                m.grad_checkpointing = enable

    @torch.jit.ignore
    def _checkpointed_stages(self, x: torch.Tensor) -> torch.Tensor:
        return checkpoint_stages((self.layer1, self.layer2, self.layer3, self.layer4), x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        x = self.bn1(x)
        x = self.act1(x)
        x = self.maxpool(x)
        if not torch.jit.is_scripting() and self.grad_checkpointing:
            return self._checkpointed_stages(x)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)
        return x


def _create_steps_resnet(variant: str, pretrained: bool = False, **kwargs) -> StepsResNet:
    return build_steps_model(StepsResNet, variant, pretrained, **kwargs)


def _cfg(url: str = '', **kwargs) -> Dict[str, Any]:
    return {
        'url': url,
        'num_classes': 1000, 'input_size': (3, 224, 224), 'pool_size': (7, 7),
        'crop_pct': 0.95, 'interpolation': 'bicubic',
        'mean': IMAGENET_DEFAULT_MEAN, 'std': IMAGENET_DEFAULT_STD,
        'first_conv': 'conv1', 'classifier': 'fc',
        'paper_ids': 'arXiv:2511.14329', 'paper_name': 'Step by Step Network',
        'license': 'apache-2.0',
        **kwargs,
    }


default_cfgs = generate_default_cfgs({
    'steps_resnet18.untrained': _cfg(),
    'steps_resnet34.untrained': _cfg(),
    'steps_resnet50.untrained': _cfg(),
    'test_steps_resnet.untrained': _cfg(input_size=(3, 64, 64), pool_size=(2, 2)),
    'test_steps_resnet_bottleneck.untrained': _cfg(input_size=(3, 64, 64), pool_size=(2, 2)),
})


@register_model
def steps_resnet18(pretrained: bool = False, **kwargs) -> StepsResNet:
    """Steps-ResNet-18: stages 3/4 as 5/7 steps (18 blocks, 38 layers; ResNet-18 has 8 / 18)."""
    model_args = dict(block=BasicBlock, layers=(2, 2, 2, 2), num_steps=(1, 1, 5, 7), steps_move=(0, 0, 1, 1))
    return _create_steps_resnet('steps_resnet18', pretrained, **dict(model_args, **kwargs))


@register_model
def steps_resnet34(pretrained: bool = False, **kwargs) -> StepsResNet:
    """Steps-ResNet-34: stages 3/4 as 5/7 steps (34 blocks, 70 layers; ResNet-34 has 16 / 34)."""
    model_args = dict(block=BasicBlock, layers=(3, 4, 6, 3), num_steps=(1, 1, 5, 7), steps_move=(0, 0, 3, 1))
    return _create_steps_resnet('steps_resnet34', pretrained, **dict(model_args, **kwargs))


@register_model
def steps_resnet50(pretrained: bool = False, **kwargs) -> StepsResNet:
    """Steps-ResNet-50: stages 3/4 as 5/7 steps of Bottlenecks (34 blocks, 104 layers; ResNet-50 has 16 / 50)."""
    model_args = dict(block=Bottleneck, layers=(3, 4, 6, 3), num_steps=(1, 1, 5, 7), steps_move=(0, 0, 3, 1))
    return _create_steps_resnet('steps_resnet50', pretrained, **dict(model_args, **kwargs))


@register_model
def test_steps_resnet(pretrained: bool = False, **kwargs) -> StepsResNet:
    """Tiny BasicBlock Steps-ResNet for tests."""
    model_args = dict(
        block=BasicBlock, layers=(1, 1, 3, 2), channels=(8, 16, 32, 64),
        num_steps=(1, 1, 3, 3), steps_move=(0, 0, 1, 1), stem_width=8,
    )
    return _create_steps_resnet('test_steps_resnet', pretrained, **dict(model_args, **kwargs))


@register_model
def test_steps_resnet_bottleneck(pretrained: bool = False, **kwargs) -> StepsResNet:
    """Tiny Bottleneck Steps-ResNet for tests (feature widths 4x the planned widths)."""
    model_args = dict(
        block=Bottleneck, layers=(1, 1, 3, 2), channels=(8, 16, 32, 64),
        num_steps=(1, 1, 3, 3), steps_move=(0, 0, 1, 1),
    )
    return _create_steps_resnet('test_steps_resnet_bottleneck', pretrained, **dict(model_args, **kwargs))
