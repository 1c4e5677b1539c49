"""Weights in timm's layout: export a trained Steps model, load it back with timm, and refuse bad files clearly.

Step by Step Network (StepsNet), arXiv:2511.14329. No weights have been released for the paper, so a Steps model
with ``pretrained=True`` loads weights that a user trained: a folder with ``config.json`` and ``model.safetensors``,
the layout that ``timm.create_model('local-dir:/path', pretrained=True)`` reads and the Hugging Face Hub serves.
:func:`export_weights` writes that folder from a ``stepsnet train`` checkpoint (``last.pth`` / ``best.pth``) or from
a model; :func:`load_model` reads it back with checks and returns the model with its preprocessing::

    import timm, stepsnet
    stepsnet.export_weights('runs/cls/digits/best.pth', 'weights/digits')
    model = timm.create_model('local-dir:weights/digits', pretrained=True)              # timm's own loader
    model = timm.create_model('test_steps_resnet', pretrained=True,                     # a state dict file
                              pretrained_cfg_overlay=dict(file='weights/digits/model.safetensors', num_classes=10))
    model, data_config = stepsnet.load_model('weights/digits')                          # + input size, mean, std

A folder that fails its checks is a :class:`WeightsError` naming the file and what was expected; loading never
executes code (safetensors, or ``torch.load(weights_only=True)``). The checks on a weight file are the ones every
Steps entrypoint runs with ``pretrained=True`` (:mod:`stepsnet.models._builder`).
"""
import json
import os
import shutil
import tempfile
from dataclasses import fields
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

import safetensors.torch
import timm
import torch
import torch.nn as nn
from timm.data import resolve_data_config
from timm.models import PretrainedCfg

from stepsnet.models._builder import CONFIG_NAME, PAPER_IDS, WEIGHTS_NAME, WeightsError, check_weight_file, has_head
from stepsnet.models.factory import CLS_KIND
from stepsnet.models.twins import register_twin
from stepsnet.utils.checkpoint import atomic_write_bytes, atomic_write_text, load_checkpoint

__all__ = ['WeightsError', 'export_weights', 'load_model', 'read_config', 'WEIGHTS_NAME',
           'CONFIG_NAME']

PathLike = Union[str, os.PathLike]
LOCAL_DIR = 'local-dir:'
_PRETRAINED_FIELDS = {f.name for f in fields(PretrainedCfg)}
_SOURCE_FIELDS = ('url', 'file', 'state_dict', 'hf_hub_id', 'hf_hub_filename', 'source')
# factory arguments that describe how a model was created, not what it is
_RUNTIME_ARGS = ('num_classes', 'pretrained', 'pretrained_cfg', 'pretrained_cfg_overlay', 'pretrained_model_args',
                 'cache_dir', 'checkpoint_path', 'device', 'dtype', 'features_only', 'out_indices', 'feature_cls')


def read_config(path: PathLike) -> Dict[str, Any]:
    """Read and check a weight folder's ``config.json`` (timm's layout).

    Raises:
        FileNotFoundError: No such folder or no ``config.json`` in it.
        WeightsError: The file is not JSON, or not a timm model config (``architecture``, ``pretrained_cfg``).
    """
    folder = Path(_strip_source(path))
    file = folder / CONFIG_NAME
    if not folder.is_dir():
        raise FileNotFoundError(f'weight folder {folder} does not exist')
    if not file.is_file():
        raise FileNotFoundError(f'{file} does not exist; expected a folder written by `stepsnet export-weights`')
    try:
        cfg = json.loads(file.read_text(encoding='utf-8'))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise WeightsError(f'{file} is not valid JSON ({e}); expected a timm model config') from e
    if not isinstance(cfg, dict) or not isinstance(cfg.get('architecture'), str) \
            or not isinstance(cfg.get('pretrained_cfg', {}), dict):
        found = sorted(cfg) if isinstance(cfg, dict) else type(cfg).__name__
        raise WeightsError(
            f'{file} is not a timm model config (found {found}); expected "architecture", "num_classes" and '
            '"pretrained_cfg" as written by `stepsnet export-weights` or timm')
    unknown = sorted(set(cfg.get('pretrained_cfg', {})) - _PRETRAINED_FIELDS)
    if unknown:
        raise WeightsError(f'{file}: pretrained_cfg has keys timm does not know: {unknown}')
    return cfg


def _strip_source(path: PathLike) -> str:
    path = os.fspath(path)
    return path[len(LOCAL_DIR):] if path.startswith(LOCAL_DIR) else path


# ---- export ----

def _plain(value: Any) -> Any:
    """Tuples to lists and tensors / numpy scalars to numbers, recursively, for JSON."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, 'item') and callable(value.item):
        return value.item()
    return value


def _json_args(args: Mapping[str, Any], where: str) -> Dict[str, Any]:
    out = {}
    for k, v in args.items():
        if k in _RUNTIME_ARGS:
            continue
        try:
            json.dumps(_plain(v))
        except (TypeError, ValueError) as e:
            raise WeightsError(
                f'model argument {k}={v!r} ({where}) cannot be written to {CONFIG_NAME}; expected JSON values '
                '(pass model_args= with a serialisable replacement, e.g. a layer name instead of a class)') from e
        out[k] = _plain(v)
    return out


def _model_config(
        architecture: str,
        num_classes: int,
        model_args: Mapping[str, Any],
        data_config: Mapping[str, Any],
        label_names: Optional[Sequence[str]],
        base: Mapping[str, Any],
) -> Dict[str, Any]:
    """``config.json`` in timm's layout for an architecture, its arguments and its preprocessing.

    ``base`` is the pretrained config the model was built with; the data config overrides its preprocessing.
    """
    cfg = {k: v for k, v in base.items() if k in _PRETRAINED_FIELDS}
    cfg.update({k: v for k, v in data_config.items() if k in _PRETRAINED_FIELDS})
    in_chans = int(model_args.get('in_chans', cfg.get('input_size', (3,))[0]))
    size = data_config.get('img_size') or cfg.get('input_size', (3, 224, 224))[-2:]
    size = (size, size) if isinstance(size, int) else tuple(size)[-2:]
    cfg.update(architecture=architecture, num_classes=int(num_classes), input_size=(in_chans, *size),
               paper_ids=cfg.get('paper_ids') or PAPER_IDS, custom_load=False,
               # timm has no plugin hook that would find a model registered by another package: say what to do
               notes=['built by stepsnet: run `import stepsnet` (pip install stepsnet) before '
                      "timm.create_model('local-dir:DIR'), or use stepsnet.load_model(DIR)"])
    for key in _SOURCE_FIELDS + ('tag', 'test_input_size', 'test_crop_pct', 'test_pool_size', 'label_offset'):
        cfg.pop(key, None)
    if tuple(size) != tuple(base.get('input_size', (3, 224, 224))[-2:]):
        cfg['pool_size'] = None  # the head's pooled map changes with the input size
    config: Dict[str, Any] = {'architecture': cfg.pop('architecture'), 'num_classes': int(num_classes)}
    if label_names:
        config['label_names'] = list(label_names)
    if model_args:
        config['model_args'] = dict(model_args)
    config['pretrained_cfg'] = {k: v for k, v in cfg.items() if v is not None}
    return _plain(config)


def _from_checkpoint(path: PathLike, use_ema: bool) -> Tuple[Dict[str, Any], Dict[str, torch.Tensor]]:
    ck = load_checkpoint(path, CLS_KIND, required=('model', 'meta'))
    meta = ck['meta']
    if 'model_args' not in meta:
        raise WeightsError(f'checkpoint {os.fspath(path)!r} does not say how its model was built (no meta.model_args); '
                           'expected a checkpoint written by `stepsnet train`')
    if use_ema and ck.get('ema') is None:
        raise WeightsError(f'checkpoint {os.fspath(path)!r} has no EMA weights (trained without model_ema)')
    args = dict(meta['model_args'])
    name, num_classes = args.pop('name'), int(args.pop('num_classes'))
    dcfg = dict(meta.get('data_config') or {})
    img_size = args.pop('img_size', None) or (dcfg.get('input_size') or [None])[-1]
    if not timm.is_model(name):
        raise WeightsError(f'checkpoint {os.fspath(path)!r} holds {name!r}, which timm does not know; expected a '
                           'registered model name')
    base = timm.get_pretrained_cfg(name)
    base = base.to_dict() if base is not None else {}
    if img_size is not None and base.get('fixed_input_size'):
        args['img_size'] = img_size  # a fixed-size model (ViT, Swin) is built for its training size
    data = dict(img_size=img_size, mean=dcfg.get('mean'), std=dcfg.get('std'), crop_pct=dcfg.get('crop_pct'),
                interpolation=dcfg.get('interpolation'))
    config = _model_config(name, num_classes, _json_args(args, f'checkpoint {path}'),
                           {k: v for k, v in data.items() if v is not None}, meta.get('class_names'), base)
    return config, ck['ema'] if use_ema else ck['model']


def _from_model(
        model: nn.Module,
        model_args: Optional[Mapping[str, Any]],
        data_config: Optional[Mapping[str, Any]],
        label_names: Optional[Sequence[str]],
) -> Tuple[Dict[str, Any], Dict[str, torch.Tensor]]:
    cfg = getattr(model, 'pretrained_cfg', None) or {}
    if not cfg.get('architecture') or not hasattr(model, 'num_classes'):
        raise WeightsError(
            f'cannot export a {type(model).__name__}: expected a classifier built by timm.create_model '
            '(features_only wrappers and bare modules carry no architecture name)')
    args = dict(getattr(model, '_model_args', None) or {})  # what timm.create_model recorded
    args.update(model_args or {})
    data = resolve_data_config(model=model)
    # a fixed-size model (ViT, Swin) built for another size records it in its patch embedding
    built_for = args.get('img_size') or getattr(getattr(model, 'patch_embed', None), 'img_size', None)
    data['img_size'] = built_for or tuple(data['input_size'][-2:])
    data.update(data_config or {})
    if getattr(model, 'in_chans', None):
        args.setdefault('in_chans', model.in_chans)
    config = _model_config(cfg['architecture'], model.num_classes, _json_args(args, 'model'), data,
                           label_names or cfg.get('label_names'), cfg)
    return config, {k: v.detach().cpu() for k, v in model.state_dict().items()}


def _build_from_config(config: Mapping[str, Any]) -> nn.Module:
    args = dict(config.get('model_args') or {})
    pcfg = config['pretrained_cfg']
    if pcfg.get('fixed_input_size'):
        args.setdefault('img_size', tuple(pcfg['input_size'][-2:]))
    return timm.create_model(config['architecture'], num_classes=config['num_classes'], **args)


def _refuse_non_empty(out: Path) -> None:
    held = sorted(os.listdir(out)) if out.is_dir() else []
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f'output folder {str(out)!r} is a file; expected a folder for {CONFIG_NAME} and '
                                 f'{WEIGHTS_NAME}')
    if held:
        shown = ', '.join(held[:5]) + (f' and {len(held) - 5} more' if len(held) > 5 else '')
        raise FileExistsError(f'output folder {str(out)!r} is not empty (it holds {shown}); choose a new or empty '
                              f'folder, or add --force (force=True) to replace its {CONFIG_NAME} and {WEIGHTS_NAME}')


def export_weights(
        source: Union[PathLike, nn.Module],
        out_dir: PathLike,
        use_ema: bool = False,
        model_args: Optional[Mapping[str, Any]] = None,
        data_config: Optional[Mapping[str, Any]] = None,
        label_names: Optional[Sequence[str]] = None,
        check: bool = True,
        force: bool = False,
) -> str:
    """Write ``config.json`` + ``model.safetensors`` (timm's and the Hub's layout) for a trained model.

    ``config.json`` holds the architecture, ``num_classes``, the model arguments the model was built with, the
    class names when known, and ``pretrained_cfg`` with the preprocessing (input size, mean, std, crop,
    interpolation) and the paper id. The folder loads with ``timm.create_model('local-dir:DIR', pretrained=True)``
    or :func:`load_model`.

    Args:
        source: A ``stepsnet train`` checkpoint (``last.pth`` / ``best.pth``), or a model made by
            ``timm.create_model`` / ``stepsnet.create_steps_model``.
        out_dir: The folder; created if needed. A folder that holds anything is refused unless ``force``.
        use_ema: Export a checkpoint's EMA weights instead of its model weights.
        model_args: Extra or replacement model arguments to record (must be JSON values).
        data_config: Preprocessing to record for a model (``img_size``, ``mean``, ``std``, ``crop_pct``,
            ``interpolation``); a checkpoint's own is used otherwise.
        label_names: Class names to record for a model (a checkpoint's own are used otherwise).
        check: Build the model from the written files with timm's ``local-dir:`` loader and compare its output
            with the source weights before the files are put in place.
        force: Write into a folder that is not empty (its ``config.json`` / ``model.safetensors`` are replaced,
            anything else stays).

    Returns:
        The folder written.

    Raises:
        FileNotFoundError: No such checkpoint.
        FileExistsError: ``out_dir`` is not empty and ``force`` is not set (nothing is written).
        WeightsError: A checkpoint of another kind, model arguments that are not JSON values, weights that do not
            fit the recorded architecture, or a check that fails.
    """
    out = Path(_strip_source(out_dir))
    if not force:
        _refuse_non_empty(out)
    if isinstance(source, nn.Module):
        config, state = _from_model(source, model_args, data_config, label_names)
    else:
        config, state = _from_checkpoint(source, use_ema)
        if model_args:
            config['model_args'] = {**config.get('model_args', {}), **_json_args(model_args, 'model_args')}
    model = _build_from_config(config)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise WeightsError(
            f'the weights do not fit {config["architecture"]!r} with {config.get("model_args", {})}: '
            f'{" ".join(str(e).splitlines()[:3])}') from e

    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f'.{out.name}.', dir=out))
    try:
        tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        # the utils' writers fsync and give the files the mode open() would (safetensors' own writer makes 0600)
        atomic_write_bytes(tmp / WEIGHTS_NAME, safetensors.torch.save(tensors, metadata={'format': 'pt'}))
        atomic_write_text(tmp / CONFIG_NAME, json.dumps(config, indent=2) + '\n')
        if check:
            _check_export(source if isinstance(source, nn.Module) else model, tmp, config)
        os.replace(tmp / WEIGHTS_NAME, out / WEIGHTS_NAME)  # weights first: config.json completes the folder
        os.replace(tmp / CONFIG_NAME, out / CONFIG_NAME)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return str(out)


@torch.no_grad()
def _check_export(reference: nn.Module, folder: Path, config: Mapping[str, Any]) -> None:
    """Reload the written folder with timm and compare its output with the reference model's (eval mode)."""
    loaded, _ = load_model(folder)
    x = torch.randn((2, *config['pretrained_cfg']['input_size']), generator=torch.Generator().manual_seed(0))
    was_training = reference.training
    reference.eval()
    try:
        p = next(reference.parameters(), None)
        expected = reference(x.to(p.device) if p is not None else x).float().cpu()
    finally:
        reference.train(was_training)
    got = loaded(x)
    if not torch.allclose(got, expected, rtol=1e-4, atol=1e-5):
        raise WeightsError(
            f'the exported weights reload with another output (max abs difference '
            f'{(got - expected).abs().max().item():.3g}); expected the same model: record the arguments it was '
            'built with in model_args=')


# ---- loading ----

def load_model(path: PathLike, device: Union[str, torch.device] = 'cpu', **kwargs: Any) -> Tuple[nn.Module, Dict]:
    """Build the model a weight folder describes, with its weights; return it with its preprocessing.

    The checks come first, so a bad folder fails with a :class:`WeightsError` naming the file, and then the
    folder is loaded by timm itself (``timm.create_model('local-dir:...', pretrained=True)``). A folder whose
    architecture is the Steps twin of a timm model (``steps_<timm name>``) registers that twin first.

    Args:
        path: The folder, with or without timm's ``local-dir:`` prefix.
        device: Where to put the model.
        **kwargs: More ``timm.create_model`` arguments (e.g. ``num_classes`` for a new head, ``features_only``).

    Returns:
        (model in eval mode, data config) where the data config is timm's ``resolve_data_config`` of the model:
        ``input_size``, ``interpolation``, ``mean``, ``std``, ``crop_pct``, ``crop_mode``, ready for
        ``timm.data.create_transform(**data_config)``. Class names are in ``model.pretrained_cfg['label_names']``.

    Raises:
        FileNotFoundError: No such folder or no ``config.json``.
        WeightsError: An unreadable or foreign ``config.json`` or ``model.safetensors``, or weights that do not fit.
    """
    folder = Path(_strip_source(path)).resolve()
    config = read_config(folder)
    arch = config['architecture']
    if not timm.is_model(arch) and arch.startswith('steps_'):
        register_twin(arch[len('steps_'):])
    if not timm.is_model(arch):
        raise WeightsError(f'{folder / CONFIG_NAME} names architecture {arch!r}, which timm does not know; '
                           'expected a registered model (import the package that defines it first)')
    check_weight_file(dict(config['pretrained_cfg'], num_classes=config.get('num_classes'), source='local-dir',
                            file=str(folder)), head=has_head(kwargs))
    try:
        model = timm.create_model(f'{LOCAL_DIR}{folder}', pretrained=True, **kwargs)
    except RuntimeError as e:  # load_state_dict of an architecture built without stepsnet's checks
        raise WeightsError(f'{folder / WEIGHTS_NAME} does not fit {arch!r}: {" ".join(str(e).splitlines()[:3])}') from e
    model.to(device).eval()
    data_config = resolve_data_config(model=model)
    return model, {k: tuple(v) if isinstance(v, list) else v for k, v in data_config.items()}
