"""Building and loading every kind of model, in one place.

``create_*`` builds a model from arguments; ``*_from_checkpoint`` rebuilds the model a training run saved (its
``last.pth`` / ``best.pth``, see :class:`stepsnet.engine.RunFolder`) and loads its weights. A checkpoint stores
the exact arguments of its ``create_*`` call under ``meta['model_args']``, so any architecture a run trained
(depth-scaled trunks, other plans, other heads) comes back as it was.

=================  ==========================  ====================================  ===================
kind               build                       load a run's checkpoint               checkpoint format
=================  ==========================  ====================================  ===================
classifier         :func:`create_classifier`   :func:`classifier_from_checkpoint`    ``stepsnet-cls``
language model     :func:`create_lm`           :func:`lm_from_checkpoint`            ``stepsnet-lm``
detector           :func:`create_detector`     :func:`detector_from_checkpoint`      ``stepsnet-det``
segmenter          :func:`create_segmenter`    :func:`segmenter_from_checkpoint`     ``stepsnet-seg``
=================  ==========================  ====================================  ===================
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

import timm
import torch.nn as nn
from torchvision.models.detection import FasterRCNN, MaskRCNN, RetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.retinanet import RetinaNetHead

from stepsnet.models.dense import FPNBackbone, UperNet, create_backbone
from stepsnet.models.steps_gpt import GPT, GPTConfig
from stepsnet.models.steps_gpt import create_lm as create_gpt
from stepsnet.models.steps_gpt import lm_config as gpt_config
from stepsnet.models.twins import register_twin
from stepsnet.utils.checkpoint import CheckpointError, load_checkpoint
from stepsnet.utils.loading import load_weights
from stepsnet.utils.names import DETECTOR_ARCHS, PAIRINGS, did_you_mean
from stepsnet.utils.tasks import TASKS

__all__ = [
    'CLS_KIND', 'LM_KIND', 'DET_KIND', 'SEG_KIND', 'DETECTOR_ARCHS', 'create_classifier', 'classifier_from_checkpoint',
    'lm_config', 'create_lm', 'lm_from_checkpoint', 'create_detector', 'detector_from_checkpoint', 'create_segmenter',
    'segmenter_from_checkpoint', 'deit_trunk_config', 'PAIRINGS',
]

# the format tags of the tasks' checkpoints (the task table's)
CLS_KIND, LM_KIND, DET_KIND, SEG_KIND = (TASKS[t].kind for t in ('cls', 'lm', 'det', 'seg'))


def _run_checkpoint(path: str, kind: str) -> Dict[str, Any]:
    state = load_checkpoint(path, kind, required=('model', 'meta'))
    if 'model_args' not in state['meta']:
        raise CheckpointError(f'checkpoint {path!r} does not say how its model was built (no meta.model_args); '
                              f'expected a {kind!r} checkpoint written by stepsnet')
    return state


# ----------------------------------------------------------------------------------------------------------------
# Classifiers


def create_classifier(
        name: str,
        num_classes: Optional[int] = None,
        img_size: Optional[int] = None,
        **kwargs: Any,
) -> nn.Module:
    """``timm.create_model(name, pretrained=False, num_classes=...)``; ``img_size`` goes to models that take it.

    ``name`` is any registered timm model (``import stepsnet`` registers the Steps models), or a source timm
    resolves itself (``local-dir:PATH``, ``hf-hub:ID``) when the model is to come with its weights.
    ``num_classes=None`` keeps the model's own head (1000 classes, or the stored one of a weights folder).

    Raises:
        ValueError: ``name`` is not a registered timm model, or ``kwargs`` are not arguments of the model.
    """
    if ':' not in name and not timm.is_model(name) and name.startswith('steps_'):
        try:  # the Steps twin of any timm ResNet, ViT, Swin or ConvNeXt: registered on first use
            register_twin(name[len('steps_'):])
        except ValueError:
            pass  # not a twin either: the unknown-model error below names the name
    if ':' not in name and not timm.is_model(name):
        raise ValueError(f'unknown model {name!r}; expected a timm-registered name (timm.list_models(), the Steps '
                         f'models, or steps_<timm name> for a twin){did_you_mean(name, timm.list_models())}')
    args: Dict[str, Any] = dict(kwargs)
    if num_classes is not None:
        args['num_classes'] = num_classes
    pretrained = ':' in name
    if img_size is not None and ':' not in name:
        default = timm.models.get_pretrained_cfg(name)
        default_size = default.input_size[-1] if default is not None and default.input_size else None
        if img_size != default_size:
            try:
                return timm.create_model(name, pretrained=False, img_size=img_size, **args)
            except TypeError as e:
                if 'img_size' not in str(e):
                    raise ValueError(f'model {name!r} does not take the arguments {sorted(kwargs)}: {e}') from e
                # a model without an img_size argument (CNNs) takes any input size
    try:
        return timm.create_model(name, pretrained=pretrained, **args)
    except TypeError as e:
        raise ValueError(f'model {name!r} does not take the arguments {sorted(kwargs)}: {e}') from e


def classifier_from_checkpoint(
        path: str,
        model: Optional[str] = None,
        device: str = 'cpu',
        use_ema: bool = False,
) -> Tuple[nn.Module, Dict[str, Any]]:
    """The classifier a ``stepsnet train`` run saved, in eval mode, and what it was trained with.

    Args:
        path: ``last.pth`` / ``best.pth`` of a run.
        model: Expected model name; a checkpoint of another architecture raises.
        device: Where to put the model.
        use_ema: Load the EMA weights (the run must have kept them).

    Returns:
        ``(model, info)``; ``info`` has ``model_name``, ``model_kwargs``, ``num_classes``, ``class_names`` and
        ``data_config`` (timm's preprocessing keys: ``input_size``, ``interpolation``, ``mean``, ``std``,
        ``crop_pct``; ``timm.data.create_transform(**data_config)`` gives the evaluation transform).

    Raises:
        FileNotFoundError: No such file.
        CheckpointError: Not a classification checkpoint, or weights that do not fit.
        ValueError: The checkpoint holds another architecture than ``model``; no EMA weights with ``use_ema``.
    """
    state = _run_checkpoint(path, CLS_KIND)
    meta = state['meta']
    args = dict(meta['model_args'])
    name = args.pop('name')
    if model is not None and model != name:
        raise ValueError(f'checkpoint {path!r} holds a {name!r} model; expected {model!r}')
    net = create_classifier(name, **args)
    weights = state['model']
    if use_ema:
        if state.get('ema') is None:
            raise ValueError(f'checkpoint {path!r} has no EMA weights (the run trained without model_ema)')
        weights = state['ema']
    load_weights(net, weights, path)
    net.to(device).eval()
    kwargs = {k: v for k, v in args.items() if k not in ('num_classes', 'img_size')}
    info = dict(model_name=name, model_kwargs=kwargs, num_classes=int(args['num_classes']),
                class_names=list(meta.get('class_names') or []), data_config=dict(meta.get('data_config') or {}),
                dataset=meta.get('dataset'))
    return net, info


def deit_trunk_config(
        blocks: int,
        kind: str = 'residual',
        width: int = 384,
        heads: int = 6,
        img_size: Union[int, Tuple[int, int]] = 224,
        patch_size: Union[int, Tuple[int, int]] = 16,
        pairing: str = 'compute',
        mlp_ratio: float = 4.0,
) -> Tuple[str, Dict[str, Any]]:
    """A DeiT-like trunk for depth studies, as a timm name and keyword arguments.

    ``residual`` is a plain pre-norm ViT trunk of ``blocks`` blocks at ``width`` (one step: exactly timm's
    ``Block`` sequence). ``steps`` is a 3-step trunk (the paper's DeiT pattern) paired with it by ``pairing``:

    * ``compute`` (the paper's Table 1): the Steps twin *of that residual trunk*, ``[w/2 x L, w/sqrt2 x L/2,
      w x L/2]``: the same parameters and FLOPs, twice the blocks;
    * ``blocks`` (the paper's Fig. 2 and 6 at a given layer count): a Steps trunk with the same number of
      blocks and final width, ``[w/2 x L/2, w/sqrt2 x L/4, w x L/4]``: about half the FLOPs.

    Both come from the ``steps_deit_small_patch16_224`` entrypoint, so a checkpoint rebuilds them. ``img_size`` and
    ``patch_size`` may be ``(height, width)`` pairs: MNIST-1D's signals are ``(1, 40)`` images in ``(1, 4)`` patches
    (:mod:`stepsnet.models.steps_1d`).

    Raises:
        ValueError: Unknown ``kind`` or ``pairing``; a block count the pattern cannot split.
    """
    common = dict(embed_dim=width, num_heads=heads, img_size=img_size, patch_size=patch_size, mlp_ratio=mlp_ratio)
    name = 'steps_deit_small_patch16_224'
    if pairing not in PAIRINGS:
        raise ValueError(f'pairing must be one of {PAIRINGS}, got {pairing!r}')
    if blocks < 1:
        raise ValueError(f'a trunk needs at least one block, got {blocks}')
    if kind == 'residual':
        return name, dict(common, depth=blocks, num_steps=1, steps_move=0)
    if kind != 'steps':
        raise ValueError(f"kind must be 'residual' or 'steps', got {kind!r}")
    if pairing == 'compute':
        if blocks % 2:
            raise ValueError(f'the 3-step twin of a {blocks}-block trunk moves L/2 blocks; expected an even L')
        return name, dict(common, depth=blocks, num_steps=3, steps_move=blocks // 2)
    if blocks % 4:
        raise ValueError(f'a 3-step trunk of {blocks} blocks (L/2 + L/4 + L/4) needs a multiple of 4 blocks')
    return name, dict(common, depth=blocks // 2, num_steps=3, steps_move=blocks // 4)


# ----------------------------------------------------------------------------------------------------------------
# Language models


# names of the Llama-style models (stepsnet.models.steps_llama), which need the optional transformers extra
LLAMA_PREFIXES = ('llama_', 'steps_llama_')


def _llama_module():
    try:
        from stepsnet.models import steps_llama
    except ImportError as e:
        raise ValueError(f'the Llama-style models need transformers, the optional extra: pip install "stepsnet[hf]" '
                         f'({e})') from e
    return steps_llama


def lm_config(name: str, **overrides: Any) -> Any:
    """The config of a named language model with overrides: a :class:`GPTConfig` (``gpt_*``, ``steps_gpt_*``) or a
    ``StepsLlamaConfig`` (``llama_*``, ``steps_llama_*``). Both have ``block_size``, ``vocab_size``, ``plan()``."""
    if name.startswith(LLAMA_PREFIXES):
        return _llama_module().llama_config(name, **overrides)
    return gpt_config(name, **overrides)


def create_lm(name: str, **overrides: Any) -> nn.Module:
    """Build a named language model, e.g. ``create_lm('steps_gpt_small', vocab_size=256)``.

    ``llama_*`` is transformers' own ``LlamaForCausalLM`` and ``steps_llama_*`` its Steps twin, both behind
    ``stepsnet.models.steps_llama.CausalLM`` (the GPT's ``forward(idx, targets) -> (logits, loss)``).
    """
    if name.startswith(LLAMA_PREFIXES):
        return _llama_module().create_llama_lm(name, **overrides)
    return create_gpt(name, **overrides)


def lm_from_checkpoint(path: str, device: str = 'cpu') -> Tuple[nn.Module, Dict[str, Any]]:
    """The language model a ``stepsnet train-lm`` run saved, in eval mode.

    Returns:
        ``(model, info)``; ``info`` has ``model_name``, ``model_config``, ``tokenizer`` (the spec and, for a
        BPE, its JSON: ``stepsnet.data.text.tokenizer_from_spec`` rebuilds it), the run's ``data_dir`` and its
        ``config`` (the :class:`~stepsnet.config.LMConfig` fields, a mapping; empty when the file has none).

    Raises:
        FileNotFoundError, CheckpointError: Missing, unreadable or foreign file; weights that do not fit.
    """
    state = _run_checkpoint(path, LM_KIND)
    meta = state['meta']
    name = meta.get('model_name') or ''
    try:
        if name.startswith(LLAMA_PREFIXES):
            net = create_lm(name, **meta['model_args'])
        else:
            net = GPT(GPTConfig.from_dict(meta['model_args']))
    except (TypeError, ValueError) as e:
        raise CheckpointError(f'checkpoint {path!r} has an invalid model config ({e})') from e
    load_weights(net, state['model'], path)
    net.to(device).eval()
    return net, dict(model_name=meta.get('model_name'), model_config=net.config.to_dict(),
                     tokenizer=meta.get('tokenizer'), tokenizer_json=meta.get('tokenizer_json'),
                     data_dir=meta.get('data_dir'), config=dict(state.get('config') or {}))


# ----------------------------------------------------------------------------------------------------------------
# Detectors


def create_detector(
        backbone: str,
        num_classes: int,
        arch: str = 'mask_rcnn',
        min_size: int = 800,
        max_size: int = 1333,
        fpn_channels: int = 256,
        box_head_dim: int = 1024,
        mask_head_channels: int = 256,
        anchor_sizes: Optional[Sequence[int]] = None,
        backbone_weights: Optional[str] = None,
        model_kwargs: Optional[Mapping[str, Any]] = None,
        **detector_kwargs: Any,
) -> nn.Module:
    """A torchvision detector on a timm / stepsnet backbone with an FPN.

    Args:
        backbone: timm model name (``steps_resnet50``, ``steps_deit_small_patch16_224``, ``resnet50``, ...).
        num_classes: Object classes, background not included (labels run 1..num_classes).
        arch: ``mask_rcnn``, ``faster_rcnn`` or ``retinanet``.
        min_size: Shorter image side after the detector's resize (COCO: 800).
        max_size: Longest image side cap (COCO: 1333).
        fpn_channels: FPN width (256 in the papers; smaller for tests).
        box_head_dim: Width of the two-layer box head (R-CNN).
        mask_head_channels: Width of the four-conv mask head (Mask R-CNN).
        anchor_sizes: One anchor size per level (P2-P6 for R-CNN, P3-P7 for RetinaNet); default 32..512.
        backbone_weights: Local file of classification weights for the backbone.
        model_kwargs: Extra ``timm.create_model`` arguments (e.g. ``drop_path_rate``).
        **detector_kwargs: Passed to the torchvision detector (e.g. ``rpn_batch_size_per_image``).

    Raises:
        ValueError: Unknown ``arch`` or backbone, ``num_classes`` < 1, or not 5 anchor sizes.
    """
    if arch not in DETECTOR_ARCHS:
        raise ValueError(f'unknown detector {arch!r}; expected one of {DETECTOR_ARCHS}')
    if num_classes < 1:
        raise ValueError(f'num_classes must be >= 1, got {num_classes}')
    sizes = list(anchor_sizes or (32, 64, 128, 256, 512))
    if len(sizes) != 5:
        levels = 'P3-P7' if arch == 'retinanet' else 'P2-P6'
        raise ValueError(f'{arch} needs 5 anchor sizes ({levels}), got {sizes}')
    strides = (8, 16, 32) if arch == 'retinanet' else (4, 8, 16, 32)
    body = create_backbone(backbone, weights=backbone_weights, strides=strides, **dict(model_kwargs or {}))
    common = dict(min_size=min_size, max_size=max_size, image_mean=list(body.mean), image_std=list(body.std))
    if arch == 'retinanet':
        anchors = AnchorGenerator(tuple((s, int(s * 2 ** (1 / 3)), int(s * 2 ** (2 / 3))) for s in sizes),
                                  ((0.5, 1.0, 2.0),) * 5)
        head = RetinaNetHead(fpn_channels, anchors.num_anchors_per_location()[0], num_classes + 1)
        return RetinaNet(FPNBackbone(body, fpn_channels, extra='p6p7'), num_classes + 1, anchor_generator=anchors,
                         head=head, **common, **detector_kwargs)
    anchors = AnchorGenerator(tuple((s,) for s in sizes), ((0.5, 1.0, 2.0),) * 5)
    kwargs = dict(rpn_anchor_generator=anchors, box_head=TwoMLPHead(fpn_channels * 7 * 7, box_head_dim),
                  box_predictor=FastRCNNPredictor(box_head_dim, num_classes + 1), **common, **detector_kwargs)
    fpn = FPNBackbone(body, fpn_channels, extra='pool')
    if arch == 'faster_rcnn':
        return FasterRCNN(fpn, **kwargs)
    return MaskRCNN(fpn, mask_head=MaskRCNNHeads(fpn_channels, [mask_head_channels] * 4, 1),
                    mask_predictor=MaskRCNNPredictor(mask_head_channels, mask_head_channels, num_classes + 1),
                    **kwargs)


def detector_from_checkpoint(path: str, device: str = 'cpu') -> Tuple[nn.Module, Dict[str, Any]]:
    """The detector a ``stepsnet train-det`` run saved, in eval mode.

    Returns:
        ``(model, info)``; ``info`` has ``model_args``, ``classes``, ``cat_ids`` and the run's ``config``.
    """
    state = _run_checkpoint(path, DET_KIND)
    meta = state['meta']
    args = dict(meta['model_args'], backbone_weights=None)  # the checkpoint holds the trained backbone
    net = create_detector(**args)
    load_weights(net, state['model'], path)
    net.to(device).eval()
    return net, dict(model_args=args, classes=list(meta.get('classes') or []), cat_ids=list(meta.get('cat_ids') or []),
                     config=dict(state.get('config') or {}))


# ----------------------------------------------------------------------------------------------------------------
# Segmenters


def create_segmenter(
        backbone: str,
        num_classes: int,
        channels: int = 512,
        aux_channels: int = 256,
        aux_head: bool = True,
        pool_scales: Sequence[int] = (1, 2, 3, 6),
        dropout: float = 0.1,
        backbone_weights: Optional[str] = None,
        model_kwargs: Optional[Mapping[str, Any]] = None,
) -> UperNet:
    """UperNet on a timm / stepsnet backbone (see :class:`stepsnet.models.dense.UperNet`)."""
    return UperNet(backbone, num_classes, channels=channels, pool_scales=tuple(pool_scales),
                   aux_channels=aux_channels, aux_head=aux_head, dropout=dropout, weights=backbone_weights,
                   model_kwargs=model_kwargs)


def segmenter_from_checkpoint(path: str, device: str = 'cpu') -> Tuple[UperNet, Dict[str, Any]]:
    """The UperNet a ``stepsnet train-seg`` run saved, in eval mode.

    Returns:
        ``(model, info)``; ``info`` has ``model_args`` and the run's ``config``.
    """
    state = _run_checkpoint(path, SEG_KIND)
    args = dict(state['meta']['model_args'], backbone_weights=None)
    net = create_segmenter(**args)
    load_weights(net, state['model'], path)
    net.to(device).eval()
    return net, dict(model_args=args, config=dict(state.get('config') or {}))
