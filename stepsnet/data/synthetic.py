"""The shapes data sets of ``stepsnet data synth-coco`` / ``synth-ade``: what they hold, and the earlier functions.

The scenes are drawn by :mod:`stepsnet.data.scenes` and written by the one writer of each layout,
:func:`stepsnet.data.layouts.write_layout` with ``shape_classes=True``; :func:`write_shapes` is that write with the
size as (height, width), as the command line takes it, and :func:`shapes_summary` reads back what such a data set
holds. :func:`make_synthetic_coco` and :func:`make_synthetic_ade` are the deprecated names of the same writes. The
scene names are re-exported from here as before.
"""
import json
import os
import warnings
from typing import Any, Dict, Sequence

from .layouts import MIN_SIDE, write_layout
from .scenes import ADE_SYNTH_CLASSES, SHAPE_CLASSES, draw_scene

__all__ = ['SHAPE_CLASSES', 'ADE_SYNTH_CLASSES', 'draw_scene', 'shapes_summary', 'write_shapes', 'make_synthetic_coco',
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


def write_shapes(task: str, out: str, size: Sequence[int] = (96, 128), num_train: int = 16, num_val: int = 8,
                 max_shapes: int = 3, seed: int = 0, force: bool = False, *, size_name: str = 'size'
                 ) -> Dict[str, Any]:
    """Write the shapes data set of ``task`` (``'det'``: COCO 2017 layout, ``'seg'``: ADE20K) with ``size`` as
    (height, width), through ``write_layout(task, ..., shape_classes=True)``, and return :func:`shapes_summary`.

    Raises:
        ValueError: ``size`` is not two sides of at least :data:`~stepsnet.data.layouts.MIN_SIDE`, said in its
            (height, width) order and under ``size_name`` (``--size`` on the command line).
    """
    if len(size) != 2 or min(size) < MIN_SIDE:
        raise ValueError(f'{size_name} must be two whole numbers H,W (height, width), each >= {MIN_SIDE}, got '
                         f'{",".join(map(str, size))}')
    height, width = size  # the layout writers take (width, height)
    root = write_layout(task, out, seed=seed, force=force, shape_classes=True, train_images=num_train,
                        val_images=num_val, size=(width, height), max_shapes=max_shapes)
    return shapes_summary(root)


def _deprecated_writer(task: str, old: str, *args: Any) -> Dict[str, Any]:
    warnings.warn(f"{old} is deprecated: use stepsnet.data.layouts.write_layout({task!r}, out, shape_classes=True, "
                  'train_images=..., val_images=..., size=(width, height)); note the (width, height) order there',
                  DeprecationWarning, stacklevel=3)
    return write_shapes(task, *args)


def make_synthetic_coco(out: str, num_train: int = 16, num_val: int = 8, size: Sequence[int] = (96, 128), *,
                        max_shapes: int = 3, seed: int = 0, force: bool = False) -> Dict[str, Any]:
    """Deprecated: the shapes in the COCO 2017 layout, through ``write_layout('det', ..., shape_classes=True)``.

    ``size`` is (height, width), as this function always took it; the summary is :func:`shapes_summary`'s. The
    options ``size_jitter`` and ``splits`` of earlier releases are gone (the writer varies the sizes itself and
    names the splits as COCO 2017 does).
    The options after ``size`` are keyword-only, so that a call in the earlier order fails instead of passing
    one option for another, and each side must be at least 32.
    """
    return _deprecated_writer('det', 'make_synthetic_coco', out, size, num_train, num_val, max_shapes, seed, force)


def make_synthetic_ade(out: str, num_train: int = 16, num_val: int = 8, size: Sequence[int] = (96, 128), *,
                       max_shapes: int = 3, seed: int = 0, force: bool = False) -> Dict[str, Any]:
    """Deprecated: the shapes in the ADE20K layout, through ``write_layout('seg', ..., shape_classes=True)``.

    ``size`` is (height, width), as this function always took it; the summary is :func:`shapes_summary`'s. The
    options ``size_jitter``, ``splits`` and ``outline`` of earlier releases are gone.
    The options after ``size`` are keyword-only, so that a call in the earlier order fails instead of passing
    one option for another, and each side must be at least 32.
    """
    return _deprecated_writer('seg', 'make_synthetic_ade', out, size, num_train, num_val, max_shapes, seed, force)
