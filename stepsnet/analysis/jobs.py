"""The analyses as jobs: which models an analysis measures, built or loaded, and what it writes.

``stepsnet analyze`` (:mod:`stepsnet.cli.analyze`) parses its flags and calls these; a script can call them the
same way. The measurements themselves are in :mod:`~stepsnet.analysis.shortcut` (Fig. 2),
:mod:`~stepsnet.analysis.ablation` (Tables 6 and 7) and :mod:`~stepsnet.analysis.depth_speed` (Fig. 6c/d).
"""
from __future__ import annotations

import csv
import io
import os
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import timm
import torch
import torch.nn as nn
from tqdm import tqdm

from stepsnet.analysis import ablation, shortcut
from stepsnet.models.factory import classifier_from_checkpoint, create_classifier, deit_trunk_config
from stepsnet.utils.checkpoint import atomic_write_text

__all__ = ['build_model', 'default_img_size', 'write_rows_csv', 'ShortcutJob', 'shortcut_jobs', 'measure_shortcut',
           'ablation_models']

# a model to measure: (label, make), ``make()`` -> (model, input size, mean, std); mean / std None: the data's own
ShortcutJob = Tuple[str, Callable[[], Tuple[nn.Module, int, Optional[Sequence[float]], Optional[Sequence[float]]]]]


def build_model(name: str, kwargs: Mapping[str, Any], img_size: Optional[int], seed: int,
                num_classes: int = 10) -> nn.Module:
    """An untrained classifier, its weights drawn from ``seed``."""
    torch.manual_seed(seed)
    return create_classifier(name, num_classes, img_size, **{k: v for k, v in kwargs.items() if k != 'img_size'})


def default_img_size(name: str) -> int:
    """The input size timm's pretrained config gives ``name`` (224 when it gives none)."""
    cfg = timm.models.get_pretrained_cfg(name)
    return int(cfg.input_size[-1]) if cfg is not None and cfg.input_size else 224


def write_rows_csv(rows: Sequence[Mapping[str, Any]], path: Optional[str]) -> None:
    """Rows (the keys of the first row as the header) as CSV at ``path``, written atomically; nothing without a path
    or rows."""
    if not path or not rows:
        return
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), extrasaction='ignore', lineterminator='\n')
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())
    print(f'wrote {path}')


def shortcut_jobs(models: Sequence[str] = (), model_kwargs: Optional[Mapping[str, Any]] = None,
                  deit_blocks: Sequence[int] = (), kinds: Sequence[str] = ('residual', 'steps'), width: int = 384,
                  heads: int = 6, img_size: Optional[int] = None, patch_size: int = 16,
                  checkpoints: Sequence[str] = (), labels: Sequence[str] = (), seed: int = 0) -> List[ShortcutJob]:
    """The models of a shortcut-ratio measurement, in order: timm models at initialisation, depth-scaled DeiT-like
    trunks at initialisation (their configurations checked now), trained checkpoints. Nothing is built yet.

    Raises:
        FileNotFoundError: A checkpoint does not exist.
        ValueError: No model at all, or a trunk configuration that cannot be built.
    """
    kwargs = dict(model_kwargs or {})
    jobs: List[ShortcutJob] = []
    for name in models:
        def make(name=name):
            size = img_size or kwargs.get('img_size') or default_img_size(name)
            return build_model(name, kwargs, size, seed), size, None, None
        jobs.append((f'{name} (init)', make))
    for blocks in deit_blocks:
        for kind in kinds:
            deit_trunk_config(blocks, kind, width, heads, img_size or 224, patch_size, 'blocks')  # checked now

            def make(blocks=blocks, kind=kind):
                name, kw = deit_trunk_config(blocks, kind, width, heads, img_size or 224, patch_size, pairing='blocks')
                return build_model(name, kw, kw['img_size'], seed), kw['img_size'], None, None
            label = f'{"Steps-DeiT" if kind == "steps" else "DeiT"} {blocks} blocks ({blocks * 5 + 2} layers)'
            jobs.append((label + ' (init)', make))
    for i, path in enumerate(checkpoints):
        if not os.path.isfile(path):
            raise FileNotFoundError(f'checkpoint {path!r} does not exist')

        def make(path=path):
            net, info = classifier_from_checkpoint(path)
            dcfg = info['data_config']
            return net, img_size or dcfg['input_size'][-1], dcfg.get('mean'), dcfg.get('std')
        default = os.path.basename(os.path.dirname(os.path.abspath(path))) + ':' + os.path.basename(path)
        jobs.append((labels[i] if i < len(labels) else default, make))
    if not jobs:
        raise ValueError('nothing to measure: give --model, --deit-blocks or --checkpoint')
    return jobs


def measure_shortcut(jobs: Sequence[ShortcutJob], dataset: str, data_dir: Optional[str], split: str,
                     batch_size: int, trunk: Optional[str] = None, reduction: str = 'token', seed: int = 0,
                     progress: bool = True) -> List[shortcut.ShortcutProfile]:
    """The shortcut-ratio profile of every job's model on one batch of ``dataset`` (one batch per input size and
    normalisation, shared by the models that use it); each model is freed before the next is built."""
    profiles = []
    batches: Dict[Any, Any] = {}
    for label, make in tqdm(jobs, desc='shortcut ratio', disable=not progress):
        model, size, mean, std = make()
        key = (size, tuple(mean or ()), tuple(std or ()))
        if key not in batches:
            batches[key] = shortcut.input_batch(dataset, data_dir, split, size, batch_size, mean, std, seed)
        profiles.append(shortcut.shortcut_ratio(model, batches[key], trunk, reduction, label))
        del model
    return profiles


def ablation_models(checkpoints: Sequence[str], model: Optional[str], model_kwargs: Optional[Mapping[str, Any]],
                    img_size: Optional[int], dataset: str, seed: int = 0, device: str = 'cpu',
                    trunk: Optional[str] = None) -> Tuple[List[nn.Module], Dict[str, Any]]:
    """The models an ablation (Table 6 or 7) evaluates and their data config: one per checkpoint (all of the same
    preprocessing), or an untrained ``model``; each must hold a Steps trunk, checked before any evaluation.

    Raises:
        FileNotFoundError: A checkpoint does not exist.
        ValueError: Neither checkpoints nor a model, checkpoints of different preprocessing, no Steps trunk.
    """
    from stepsnet.tasks.classification import data_config, load_config
    for path in checkpoints:
        if not os.path.isfile(path):
            raise FileNotFoundError(f'checkpoint {path!r} does not exist')
    if not checkpoints and not model:
        raise ValueError('give --checkpoint (one or more stepsnet train checkpoints) or --model')
    if checkpoints:
        models, dcfg = [], None
        for path in checkpoints:
            net, info = classifier_from_checkpoint(path, model, device)
            if dcfg is not None and info['data_config'] != dcfg:
                raise ValueError(f'{path!r} was trained with other preprocessing ({info["data_config"]}) than '
                                 f'{checkpoints[0]!r} ({dcfg}); expected checkpoints of the same recipe')
            dcfg = dict(info['data_config'])
            ablation.find_steps(net, trunk)  # fail before any evaluation when there is no Steps trunk
            models.append(net)
    else:
        size = img_size or 32
        net = build_model(model, model_kwargs or {}, size, seed)
        ablation.find_steps(net, trunk)
        models, dcfg = [net], data_config(load_config(model=model, dataset=dataset, img_size=size))
    if img_size:
        dcfg['input_size'] = (3, img_size, img_size)
    return models, dcfg
