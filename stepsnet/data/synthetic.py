"""The shapes data sets of ``stepsnet data synth-coco`` / ``synth-ade``: what they hold, and the earlier functions.

The scenes are drawn by :mod:`stepsnet.data.scenes` and written by the one writer of each layout,
:func:`stepsnet.data.layouts.write_layout` with ``shape_classes=True``. :func:`shapes_summary` reads back what such a
data set holds; :func:`make_synthetic_coco` and :func:`make_synthetic_ade` are the deprecated names of those writes
(``size`` as (height, width), as they always took it). The scene names are re-exported from here as before.
"""
import json
import os
import warnings
from typing import Any, Dict, Sequence

from .layouts import write_layout
from .scenes import ADE_SYNTH_CLASSES, SHAPE_CLASSES, draw_scene

__all__ = ['SHAPE_CLASSES', 'ADE_SYNTH_CLASSES', 'draw_scene', 'shapes_summary', 'make_synthetic_coco',
           'make_synthetic_ade']


def shapes_summary(root: str) -> Dict[str, Any]:
    """What a shapes data set written with ``shape_classes=True`` holds, read from its files: ``root``, per split
    the image count and folders (and in the COCO 2017 layout the instance count and annotation file), and the class
    names.

    Args:
        root: The folder the writer returned: a COCO 2017 layout (``annotations/instances_*.json``) or an ADE20K one
            (``images/`` and ``annotations/`` by split).

    Raises:
        FileNotFoundError: ``root`` holds neither layout.
    """
    coco = os.path.join(root, 'annotations', 'instances_train2017.json')
    if os.path.isfile(coco):
        splits, names = {}, []
        for split in ('train2017', 'val2017'):
            ann_file = os.path.join(root, 'annotations', f'instances_{split}.json')
            with open(ann_file, encoding='utf-8') as f:
                data = json.load(f)
            names = [c['name'] for c in data['categories']]
            splits[split] = {'images': len(data['images']), 'annotations': len(data['annotations']),
                             'image_dir': os.path.join(root, split), 'ann_file': ann_file}
        return {'root': root, 'categories': names, 'splits': splits}
    if not os.path.isdir(os.path.join(root, 'images', 'training')):
        raise FileNotFoundError(f'{root!r} holds neither a COCO 2017 layout ({coco!r}) nor an ADE20K one '
                                f'({os.path.join(root, "images", "training")!r})')
    splits = {}
    for split in ('training', 'validation'):
        image_dir = os.path.join(root, 'images', split)
        splits[split] = {'images': sum(n.endswith('.jpg') for n in os.listdir(image_dir)),
                         'image_dir': image_dir, 'ann_dir': os.path.join(root, 'annotations', split)}
    return {'root': root, 'num_classes': len(ADE_SYNTH_CLASSES), 'classes': list(ADE_SYNTH_CLASSES),
            'splits': splits}


def _deprecated_writer(task: str, old: str, out: str, num_train: int, num_val: int, size: Sequence[int],
                       max_shapes: int, seed: int, force: bool) -> Dict[str, Any]:
    warnings.warn(f"{old} is deprecated: use stepsnet.data.layouts.write_layout({task!r}, out, shape_classes=True, "
                  'train_images=..., val_images=..., size=(width, height)); note the (width, height) order there',
                  DeprecationWarning, stacklevel=3)
    if len(size) != 2:
        raise ValueError(f'size must be two integers (height, width), got {tuple(size)!r}')
    height, width = size
    root = write_layout(task, out, seed=seed, force=force, shape_classes=True, train_images=num_train,
                        val_images=num_val, size=(width, height), max_shapes=max_shapes)
    return shapes_summary(root)


def make_synthetic_coco(out: str, num_train: int = 16, num_val: int = 8, size: Sequence[int] = (96, 128),
                        max_shapes: int = 3, seed: int = 0, force: bool = False) -> Dict[str, Any]:
    """Deprecated: the shapes in the COCO 2017 layout, through ``write_layout('det', ..., shape_classes=True)``.

    ``size`` is (height, width), as this function always took it; the summary is :func:`shapes_summary`'s. The
    options ``size_jitter`` and ``splits`` of earlier releases are gone (the writer varies the sizes itself and
    names the splits as COCO 2017 does).
    """
    return _deprecated_writer('det', 'make_synthetic_coco', out, num_train, num_val, size, max_shapes, seed, force)


def make_synthetic_ade(out: str, num_train: int = 16, num_val: int = 8, size: Sequence[int] = (96, 128),
                       max_shapes: int = 3, seed: int = 0, force: bool = False) -> Dict[str, Any]:
    """Deprecated: the shapes in the ADE20K layout, through ``write_layout('seg', ..., shape_classes=True)``.

    ``size`` is (height, width), as this function always took it; the summary is :func:`shapes_summary`'s. The
    options ``size_jitter``, ``splits`` and ``outline`` of earlier releases are gone.
    """
    return _deprecated_writer('seg', 'make_synthetic_ade', out, num_train, num_val, size, max_shapes, seed, force)
