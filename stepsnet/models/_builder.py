"""Building Steps models with timm, with the weight source checked first.

Step by Step Network (StepsNet), arXiv:2511.14329. Every ``steps_*`` entrypoint is built by
:func:`build_steps_model`, timm's ``build_model_with_cfg`` (timm keeps its own in ``timm/models/_builder.py``) with
checks in front: ``pretrained=True`` without a weight source says that no released weights exist and how to load
local ones; a weight file that is not readable safetensors / PyTorch weights, or that holds another architecture or
class count, is a :class:`WeightsError` naming the file and what was expected. Loading never executes code
(safetensors, or ``torch.load(weights_only=True)``). Once released weights exist, a ``default_cfgs`` entry with
``hf_hub_id`` (or ``url``) makes ``pretrained=True`` load them through timm, with no change to this module.

Writing and reading weight folders (``config.json`` + ``model.safetensors``) is :mod:`stepsnet.weights`.
"""
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import torch
import torch.nn as nn
from safetensors import safe_open
from timm.models import build_model_with_cfg, resolve_pretrained_cfg

__all__ = ['WeightsError', 'build_steps_model', 'check_weight_file', 'has_head', 'WEIGHTS_NAME', 'CONFIG_NAME',
           'PAPER_IDS']

WEIGHTS_NAME = 'model.safetensors'  # timm's and the Hub's name for safetensors weights
CONFIG_NAME = 'config.json'
PAPER_IDS = 'arXiv:2511.14329'


class WeightsError(ValueError):
    """A weight folder or file that cannot be loaded: missing, unreadable, or for another model."""


# ---- reading and checking files ----

def _open_safetensors(path: Path) -> Dict[str, Tuple[int, ...]]:
    """Tensor names and shapes from a safetensors header (no tensor data is read)."""
    try:
        with safe_open(str(path), framework='pt') as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as e:  # safetensors raises its own error types for truncated or foreign files
        raise WeightsError(
            f'{path} is not a readable safetensors file ({type(e).__name__}: {e}); expected the {WEIGHTS_NAME} '
            'written by `stepsnet export-weights` or by timm') from e


def _weight_shapes(path: Path) -> Dict[str, Tuple[int, ...]]:
    """Tensor names and shapes of a weight file: safetensors, or a PyTorch state dict (loaded without code)."""
    if not path.is_file():
        raise WeightsError(f'weight file {path} does not exist; expected a {WEIGHTS_NAME} or .pth state dict')
    if path.suffix == '.safetensors':
        return _open_safetensors(path)
    try:
        state = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as e:  # pickle, zip and weights_only errors all mean the same thing here
        raise WeightsError(
            f'{path} is not a readable PyTorch state dict ({type(e).__name__}); expected tensors saved with '
            'torch.save (code is never executed on load)') from e
    if isinstance(state, Mapping):
        for key in ('state_dict_ema', 'model_ema', 'state_dict', 'model'):  # timm's checkpoint keys
            if isinstance(state.get(key), Mapping):
                state = state[key]
                break
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f'{path} does not hold a state dict (names -> tensors); expected model weights')
    return {k: tuple(v.shape) for k, v in state.items()}


def _classifier_keys(cfg: Mapping[str, Any]) -> List[str]:
    heads = cfg.get('classifier') or ()
    return [f'{h}.weight' for h in ((heads,) if isinstance(heads, str) else heads)]


# ---- building Steps models with checked pretrained weights ----

def _weight_source(cfg: Mapping[str, Any]) -> Optional[str]:
    """Where timm would load weights from for this pretrained config (None: nowhere)."""
    if cfg.get('source') == 'local-dir':
        return 'local-dir'
    for key in ('state_dict', 'file', 'hf_hub_id', 'url'):
        if cfg.get(key):
            return key
    return None


def _no_weights_error(variant: str) -> WeightsError:
    return WeightsError(
        f'no released weights exist for {variant!r} (the paper, {PAPER_IDS}, has published none); train a model '
        f'and load your own weights, e.g. `stepsnet export-weights runs/cls/x/best.pth --out DIR`, then '
        f"timm.create_model('local-dir:DIR', pretrained=True), or timm.create_model({variant!r}, pretrained=True, "
        "pretrained_cfg_overlay=dict(file='DIR/model.safetensors', num_classes=N)); pretrained=False builds it "
        'untrained')


def check_weight_file(cfg: Mapping[str, Any], head: bool = True) -> Path:
    """The weight file a local source names, read far enough to check it (header only for safetensors).

    With ``head``, the file's classifier must have the config's class count: otherwise timm would fail to load it,
    or drop it without a word when the model is built for the file's count. Models without a head (features_only,
    ``num_classes=0``) discard it anyway.
    """
    if cfg.get('source') == 'local-dir':
        folder = Path(cfg['file'])
        file = folder / WEIGHTS_NAME
        if not file.is_file():
            raise WeightsError(f'{folder} has no {WEIGHTS_NAME}; expected the weights beside its {CONFIG_NAME}')
    else:
        file = Path(cfg['file'])
    shapes = _weight_shapes(file)
    expected = cfg.get('num_classes') if head else None
    for key in _classifier_keys(cfg):
        if key in shapes and expected is not None and shapes[key][0] != expected:
            where = CONFIG_NAME if cfg.get('source') == 'local-dir' else 'the pretrained config'
            raise WeightsError(
                f'{file} holds a classifier for {shapes[key][0]} classes but {where} says {expected}; '
                f'expected them to agree (with pretrained_cfg_overlay, add num_classes={shapes[key][0]})')
    return file


def has_head(kwargs: Mapping[str, Any]) -> bool:
    """Whether a model built with these ``timm.create_model`` arguments keeps a classifier."""
    return not kwargs.get('features_only') and kwargs.get('num_classes') != 0


def _checked_filter(
        file: Path,
        variant: str,
        filter_fn: Optional[Callable],
        cfg: Mapping[str, Any],
) -> Callable[[Dict[str, torch.Tensor], nn.Module], Dict[str, torch.Tensor]]:
    """Wrap a pretrained filter with a check that the weights belong to the model (names and shapes)."""

    def check(state_dict: Dict[str, torch.Tensor], model: nn.Module) -> Dict[str, torch.Tensor]:
        if filter_fn is not None:
            state_dict = filter_fn(state_dict, model)
        own = model.state_dict()
        # timm adapts these two on purpose: a new head for another class count, a stem for other input channels
        adapted = set(_classifier_keys(cfg)) | {k.replace('.weight', '.bias') for k in _classifier_keys(cfg)}
        first = cfg.get('first_conv')
        adapted |= {f'{c}.weight' for c in ((first,) if isinstance(first, str) else (first or ()))}
        missing = [k for k in own if k not in state_dict and k not in adapted]
        unexpected = [k for k in state_dict if k not in own]
        wrong = [f'{k} {tuple(v.shape)} (model {tuple(own[k].shape)})' for k, v in state_dict.items()
                 if k in own and k not in adapted and tuple(v.shape) != tuple(own[k].shape)]
        if missing or unexpected or wrong:
            parts = [f'{len(x)} {what} (e.g. {", ".join(x[:3])})' for x, what in
                     ((missing, 'missing'), (unexpected, 'unexpected'), (wrong, 'of another shape')) if x]
            raise WeightsError(
                f'{file} does not hold weights of {variant!r} as built here: tensors {"; ".join(parts)}; expected '
                'the state dict of the same architecture and model arguments (see its config.json)')
        return state_dict

    return check


def build_steps_model(
        model_cls: Callable[..., nn.Module],
        variant: str,
        pretrained: bool = False,
        pretrained_filter_fn: Optional[Callable] = None,
        **kwargs: Any,
) -> nn.Module:
    """timm's ``build_model_with_cfg``, with the weight source checked first when ``pretrained`` is set.

    Raises:
        WeightsError: ``pretrained=True`` and the config names no weights (no released weights exist), or a local
            weight file that is unreadable or holds another architecture or class count.
    """
    if pretrained:
        cfg = resolve_pretrained_cfg(
            variant, kwargs.get('pretrained_cfg'), kwargs.get('pretrained_cfg_overlay')).to_dict()
        source = _weight_source(cfg)
        if source is None:
            raise _no_weights_error(variant)
        if source in ('local-dir', 'file'):
            file = check_weight_file(cfg, head=has_head(kwargs))
            pretrained_filter_fn = _checked_filter(file, variant, pretrained_filter_fn, cfg)
    return build_model_with_cfg(model_cls, variant, pretrained, pretrained_filter_fn=pretrained_filter_fn, **kwargs)
