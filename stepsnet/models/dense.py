"""Backbones for dense prediction: any timm or stepsnet model as a feature pyramid, FPN necks, UperNet.

Detection (Mask R-CNN / RetinaNet, COCO) and semantic segmentation (UperNet, ADE20K) read four feature maps at
strides 4, 8, 16 and 32 from a backbone. :class:`FeatureBackbone` gets them from ``timm.create_model(name,
features_only=True)``:

* hierarchical models (ResNet, Swin, ConvNeXt and their Steps versions) give them directly; a stride-2 stem
  level is dropped, NHWC outputs (Swin) are permuted to NCHW;
* plain ViTs (DeiT, Steps-DeiT) give one stride; the last block's map goes through a simple feature pyramid
  (ViTDet, arXiv:2203.16527): transposed convolutions up, max-pooling down.

Steps models keep the stage output widths of their baselines (the paper converts only inside stages), so necks
see the same widths.
:class:`FPNBackbone` adds torchvision's FPN (P2-P6 for Mask R-CNN, P3-P7 for RetinaNet); :class:`UperNet` is
the UperNet decoder (arXiv:1807.10221) as configured in mmsegmentation (PPM on the last level, FPN fusion, an
auxiliary FCN head on the stride-16 level).
"""
import math
import os
from collections import OrderedDict
from typing import Any, Dict, List, Mapping, Optional, Sequence

import timm
import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import LayerNorm2d
from torchvision.ops import Conv2dNormActivation, FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool, LastLevelP6P7

from stepsnet.utils.meta import on_meta

__all__ = [
    'PYRAMID_STRIDES', 'backbone_defaults', 'FeatureBackbone', 'SimpleFeaturePyramid', 'FPNBackbone',
    'UperNetHead', 'FCNHead', 'UperNet', 'create_backbone',
]

PYRAMID_STRIDES = (4, 8, 16, 32)

# Modules whose models take a size other than the one they were built for only when told so.
_VIT_MODULES = ('vision_transformer', 'steps_vit', 'deit', 'vision_transformer_hybrid', 'eva')
_SWIN_MODULES = ('swin_transformer', 'steps_swin', 'swin_transformer_v2')


def backbone_defaults(name: str) -> Dict[str, Any]:
    """Keyword arguments a backbone needs for images of any size (dynamic position embeddings, no size check).

    Args:
        name: A timm model name (``import stepsnet`` registers the Steps models).

    Raises:
        ValueError: ``name`` is not a registered timm model.
    """
    if not timm.is_model(name):
        raise ValueError(f'unknown backbone {name!r}; expected a timm model name, e.g. steps_resnet50, '
                         f'steps_deit_small_patch16_224, steps_swin_tiny_patch4_window7_224 or resnet50')
    if timm.models.is_model_in_modules(name, _VIT_MODULES):
        return {'dynamic_img_size': True}
    if timm.models.is_model_in_modules(name, _SWIN_MODULES):
        return {'strict_img_size': False}
    return {}


class SimpleFeaturePyramid(nn.Module):
    """One stride-``r`` map -> maps at ``strides`` (ViTDet): 2x transposed convs up, max-pooling down.

    Going up halves the channels at each 2x step (as ViTDet: C/4 at stride 4 from a stride-16 ViT); going down
    keeps them.
    """

    def __init__(self, in_channels: int, in_stride: int, strides: Sequence[int] = PYRAMID_STRIDES):
        super().__init__()
        self.channels: List[int] = []
        self.stages = nn.ModuleList()
        for stride in strides:
            ratio = math.log2(in_stride / stride)
            if ratio != int(ratio):
                raise ValueError(f'a simple feature pyramid needs power-of-two stride ratios; got input stride '
                                 f'{in_stride} for output stride {stride}')
            ratio = int(ratio)
            layers: List[nn.Module] = []
            ch = in_channels
            for i in range(ratio):  # up: transposed convs, LN + GELU between them
                out = max(ch // 2, 8)
                if i > 0:
                    layers += [LayerNorm2d(ch), nn.GELU()]
                layers.append(nn.ConvTranspose2d(ch, out, kernel_size=2, stride=2))
                ch = out
            if ratio < 0:
                layers.append(nn.MaxPool2d(kernel_size=2 ** -ratio, stride=2 ** -ratio))
            self.stages.append(nn.Sequential(*layers))
            self.channels.append(ch)

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        return [stage(x) for stage in self.stages]


class FeatureBackbone(nn.Module):
    """A timm model (``features_only=True``) giving NCHW maps at strides 4, 8, 16, 32 (or a subset).

    Attributes:
        channels: Channels of each output map.
        strides: Strides of each output map (``PYRAMID_STRIDES``).
        name: The timm model name.
        mean: Normalisation mean of the backbone (from its pretrained config, ImageNet by default).
        std: Normalisation std.
    """

    def __init__(self, name: str, weights: Optional[str] = None, strides: Sequence[int] = PYRAMID_STRIDES,
                 **model_kwargs: Any):
        """Build the backbone.

        Args:
            name: timm model name, e.g. ``steps_resnet50`` or ``steps_deit_small_patch16_224``.
            weights: A local file of the whole classification model's weights (a state dict, or a checkpoint
                holding one under ``model`` / ``state_dict``; ``.safetensors`` too), loaded by timm before the
                model is cut to its features (the classifier is dropped). ``None``: random initialisation.
                Nothing is ever downloaded.
            strides: Output strides, a subset of 4, 8, 16, 32 (RetinaNet reads 8-32).
            **model_kwargs: Passed to ``timm.create_model`` (e.g. ``drop_path_rate``), after the defaults of
                :func:`backbone_defaults`.

        Raises:
            FileNotFoundError: ``weights`` does not exist.
            ValueError: Unknown model, or its features do not cover strides 4-32 and are not single-stride.
        """
        super().__init__()
        kwargs = {**backbone_defaults(name), **model_kwargs}
        if weights is not None:
            if not os.path.isfile(weights):
                raise FileNotFoundError(f'backbone weights {weights!r} do not exist; expected a local state-dict file')
            kwargs['pretrained_cfg_overlay'] = dict(file=os.fspath(weights))
            _check_backbone_weights(name, weights, model_kwargs)
        self.name = name
        self.body = timm.create_model(name, pretrained=weights is not None, features_only=True, **kwargs)
        info = self.body.feature_info
        reductions, channels = list(info.reduction()), list(info.channels())
        fmt = getattr(self.body, 'output_fmt', 'NCHW')
        self.nhwc = str(getattr(fmt, 'value', fmt)) == 'NHWC'
        cfg = getattr(self.body, 'pretrained_cfg', None) or {}
        self.mean = tuple(cfg.get('mean', IMAGENET_DEFAULT_MEAN))
        self.std = tuple(cfg.get('std', IMAGENET_DEFAULT_STD))
        self.strides = list(strides)
        if not self.strides or any(s not in PYRAMID_STRIDES for s in self.strides):
            raise ValueError(f'strides must be a subset of {list(PYRAMID_STRIDES)}, got {self.strides}')
        if len(set(reductions)) == 1:  # plain ViT: one stride; use the last map
            self.take = [len(reductions) - 1]
            self.pyramid: Optional[SimpleFeaturePyramid] = SimpleFeaturePyramid(
                channels[-1], reductions[-1], self.strides)
            self.channels = list(self.pyramid.channels)
        else:
            self.take = []
            for stride in self.strides:
                found = [i for i, r in enumerate(reductions) if r == stride]
                if not found:
                    raise ValueError(f'backbone {name!r} gives features at strides {reductions}; expected every '
                                     f'stride of {list(PYRAMID_STRIDES)} (or a single stride, as a ViT)')
                self.take.append(found[-1])
            self.pyramid = None
            self.channels = [channels[i] for i in self.take]

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        feats = self.body(x)
        feats = [feats[i] for i in self.take]
        if self.nhwc:
            feats = [f.permute(0, 3, 1, 2).contiguous() for f in feats]
        if self.pyramid is not None:
            feats = self.pyramid(feats[0])
        return feats


def _check_backbone_weights(name: str, path: str, model_kwargs: Mapping[str, Any]) -> None:
    """Refuse weights of another architecture (timm loads a feature backbone's weights without complaint).

    Raises:
        ValueError: The file is unreadable, or the backbone's tensors are missing from it or have other shapes.
    """
    try:
        state = timm.models.load_state_dict(path, weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file becomes one clear message
        raise ValueError(f'cannot read backbone weights {path!r} ({type(e).__name__}); expected a state dict '
                         '(.pth) or a .safetensors file') from e
    with on_meta():
        full = timm.create_model(name, num_classes=0, **model_kwargs)
    expected = {k: tuple(v.shape) for k, v in full.state_dict().items()}
    missing = [k for k in expected if k not in state]
    shapes = [k for k in expected if k in state and tuple(state[k].shape) != expected[k]]
    if missing or shapes:
        detail = (f'{len(missing)} tensors missing (e.g. {missing[:3]})' if missing else '') + \
            (f'{"; " if missing else ""}{len(shapes)} of other shapes (e.g. {shapes[:3]})' if shapes else '')
        raise ValueError(f'backbone weights {path!r} do not fit {name!r}: {detail}; expected the classification '
                         f'weights of a {name!r} model')


def create_backbone(name: str, weights: Optional[str] = None, strides: Sequence[int] = PYRAMID_STRIDES,
                    **model_kwargs: Any) -> FeatureBackbone:
    """A :class:`FeatureBackbone` for ``name`` (NCHW maps at ``strides``); see its arguments."""
    return FeatureBackbone(name, weights=weights, strides=strides, **model_kwargs)


class FPNBackbone(nn.Module):
    """Backbone + torchvision FPN, the interface torchvision detectors expect (``out_channels``, dict output).

    Every level of ``body`` enters the FPN. ``extra='pool'`` (Mask R-CNN / Faster R-CNN, body strides 4-32):
    P2-P5 plus a max-pooled P6, keys ``'0'..'3', 'pool'``. ``extra='p6p7'`` (RetinaNet, body strides 8-32):
    P3-P5 plus P6, P7 computed from P5.
    """

    def __init__(self, body: FeatureBackbone, out_channels: int = 256, extra: str = 'pool'):
        super().__init__()
        if extra not in ('pool', 'p6p7'):
            raise ValueError(f"extra must be 'pool' or 'p6p7', got {extra!r}")
        self.body = body
        extra_block = LastLevelMaxPool() if extra == 'pool' else LastLevelP6P7(out_channels, out_channels)
        self.fpn = FeaturePyramidNetwork(list(body.channels), out_channels, extra_blocks=extra_block)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        return self.fpn(OrderedDict((str(k), f) for k, f in enumerate(self.body(x))))


def _conv_norm_act(in_ch: int, out_ch: int, kernel_size: int = 1, norm: bool = True) -> nn.Sequential:
    """Conv (no bias under a norm) -> BatchNorm -> ReLU, mmsegmentation's ConvModule, as torchvision builds it."""
    return Conv2dNormActivation(in_ch, out_ch, kernel_size, norm_layer=nn.BatchNorm2d if norm else None,
                                activation_layer=nn.ReLU)


class UperNetHead(nn.Module):
    """UperNet decoder: pyramid pooling on the last map, top-down FPN, all levels fused at stride 4.

    Follows mmsegmentation's ``UPerHead``. The 1x1 pooled branch has no batch norm (a 1x1 map with a small batch
    gives BN nothing to normalise over; mmsegmentation needs a batch of 2 there), so batch size 1 trains.
    """

    def __init__(
            self,
            in_channels: Sequence[int],
            num_classes: int,
            channels: int = 512,
            pool_scales: Sequence[int] = (1, 2, 3, 6),
            dropout: float = 0.1,
    ):
        super().__init__()
        self.ppm = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(s), _conv_norm_act(in_channels[-1], channels, norm=s > 1))
            for s in pool_scales)
        self.bottleneck = _conv_norm_act(in_channels[-1] + len(pool_scales) * channels, channels, 3)
        self.lateral = nn.ModuleList(_conv_norm_act(c, channels) for c in in_channels[:-1])
        self.fpn_convs = nn.ModuleList(_conv_norm_act(channels, channels, 3) for _ in in_channels[:-1])
        self.fuse = _conv_norm_act(len(in_channels) * channels, channels, 3)
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        top = feats[-1]
        size = top.shape[-2:]
        pooled = [F.interpolate(branch(top), size=size, mode='bilinear', align_corners=False) for branch in self.ppm]
        laterals = [conv(f) for conv, f in zip(self.lateral, feats[:-1])]
        laterals.append(self.bottleneck(torch.cat([top] + pooled, dim=1)))
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + F.interpolate(
                laterals[i], size=laterals[i - 1].shape[-2:], mode='bilinear', align_corners=False)
        outs = [conv(lat) for conv, lat in zip(self.fpn_convs, laterals[:-1])] + [laterals[-1]]
        size = outs[0].shape[-2:]
        outs = [outs[0]] + [F.interpolate(o, size=size, mode='bilinear', align_corners=False) for o in outs[1:]]
        return self.classifier(self.dropout(self.fuse(torch.cat(outs, dim=1))))


class FCNHead(nn.Module):
    """Auxiliary head (mmsegmentation ``FCNHead``, one 3x3 conv): deep supervision on the stride-16 map."""

    def __init__(self, in_channels: int, num_classes: int, channels: int = 256, dropout: float = 0.1):
        super().__init__()
        self.conv = _conv_norm_act(in_channels, channels, 3)
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.conv(x)))


class UperNet(nn.Module):
    """Semantic segmentation: :class:`FeatureBackbone` + :class:`UperNetHead` (+ :class:`FCNHead` in training).

    Inputs are RGB images in [0, 1] (normalised inside, with the backbone's mean and std, as torchvision's
    detectors do). ``forward`` returns logits at the input size; ``forward(x, return_aux=True)`` also returns the
    auxiliary head's logits (``None`` without an auxiliary head).
    """

    def __init__(
            self,
            backbone: str,
            num_classes: int,
            channels: int = 512,
            pool_scales: Sequence[int] = (1, 2, 3, 6),
            aux_channels: int = 256,
            aux_head: bool = True,
            dropout: float = 0.1,
            weights: Optional[str] = None,
            model_kwargs: Optional[Mapping[str, Any]] = None,
    ):
        """Build the segmenter.

        Args:
            backbone: timm model name.
            num_classes: Classes predicted (ADE20K: 150; the ignored label is not one).
            channels: Decoder width (mmsegmentation: 512).
            pool_scales: Pyramid pooling output sizes.
            aux_channels: Auxiliary head width (mmsegmentation: 256).
            aux_head: Build the auxiliary FCN head (used by the loss with weight 0.4).
            dropout: Dropout before the classifiers.
            weights: Local file of classification weights for the backbone (see :class:`FeatureBackbone`).
            model_kwargs: Extra ``timm.create_model`` arguments for the backbone.
        """
        super().__init__()
        if num_classes < 1:
            raise ValueError(f'num_classes must be >= 1, got {num_classes}')
        self.num_classes = num_classes
        self.backbone = create_backbone(backbone, weights=weights, **dict(model_kwargs or {}))
        self.register_buffer('mean', torch.tensor(self.backbone.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer('std', torch.tensor(self.backbone.std).view(1, 3, 1, 1), persistent=False)
        self.decode_head = UperNetHead(self.backbone.channels, num_classes, channels, pool_scales, dropout)
        self.aux_head = FCNHead(self.backbone.channels[2], num_classes, aux_channels, dropout) if aux_head else None

    def forward(self, x: torch.Tensor, return_aux: bool = False):
        size = x.shape[-2:]
        feats = self.backbone((x - self.mean) / self.std)
        out = F.interpolate(self.decode_head(feats), size=size, mode='bilinear', align_corners=False)
        if not return_aux:
            return out
        aux = None
        if self.aux_head is not None:
            aux = F.interpolate(self.aux_head(feats[2]), size=size, mode='bilinear', align_corners=False)
        return out, aux

