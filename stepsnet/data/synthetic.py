"""Small synthetic data sets in the real COCO and ADE20K formats: coloured shapes with exact masks.

They let a fresh machine run detection and segmentation end to end (real loaders, real evaluators) without
downloading anything. Each image has a smooth, noisy background and 1 to ``max_shapes`` non-overlapping shapes
(rectangle, ellipse, triangle); a shape's class decides its hue family, so a small model can learn it quickly.

* COCO: ``<out>/{train2017,val2017}/<id>.jpg`` and ``<out>/annotations/instances_{train2017,val2017}.json``
  (polygons, ``bbox`` as x, y, w, h, ``area``, ``iscrowd`` 0, categories 1..3).
* ADE20K: ``<out>/images/{training,validation}/ADE_*.jpg`` and ``<out>/annotations/.../ADE_*.png`` with
  label 0 = unlabelled (ignored; the one-pixel outline of each shape), 1 = background, 2..4 = the shapes.

Both writers check their arguments before drawing anything, refuse to overwrite the files of an earlier data set
unless ``force=True``, and write through a temporary folder (:mod:`stepsnet.data.outputs`), so a failure leaves
the output folder as it was.
"""
import json
import math
import os
import warnings
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw

from .outputs import refuse_existing, staged_output

__all__ = ['SHAPE_CLASSES', 'ADE_SYNTH_CLASSES', 'make_synthetic_coco', 'make_synthetic_ade', 'draw_scene']

SHAPE_CLASSES = ('rectangle', 'ellipse', 'triangle')
ADE_SYNTH_CLASSES = ('background',) + SHAPE_CLASSES
_BASE_COLOURS = np.array([[220, 60, 50], [50, 170, 70], [60, 90, 220]], dtype=np.float64)
MIN_SIDE = 16  # the smallest image side with room for a shape of at least 16 pixels inside its margins


def _polygon(kind: int, box: Tuple[float, float, float, float], rng: np.random.Generator) -> List[float]:
    x0, y0, x1, y1 = box
    if kind == 0:  # rectangle
        pts = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
    elif kind == 1:  # ellipse as a 32-gon, drawn and annotated the same way
        cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
        pts = [(cx + rx * math.cos(2 * math.pi * k / 32), cy + ry * math.sin(2 * math.pi * k / 32)) for k in range(32)]
    else:  # triangle: apex somewhere on the top edge
        apex = x0 + rng.uniform(0.2, 0.8) * (x1 - x0)
        pts = [(apex, y0), (x1, y1), (x0, y1)]
    return [round(float(v), 2) for p in pts for v in p]


def draw_scene(
        height: int, width: int, rng: np.random.Generator, max_shapes: int = 3,
) -> Tuple[np.ndarray, List[Dict[str, Any]]]:
    """One image and its shapes.

    Returns:
        ``(image, shapes)``: an ``(H, W, 3)`` uint8 array and, per shape, ``class`` (0-based index into
        ``SHAPE_CLASSES``), ``polygon`` (flat x, y list) and ``mask`` (``(H, W)`` bool).
    """
    if height < MIN_SIDE or width < MIN_SIDE:
        raise ValueError(f'image size {height}x{width} (height x width) is too small; expected sides >= {MIN_SIDE}')
    if max_shapes < 1:
        raise ValueError(f'max_shapes must be >= 1, got {max_shapes}')
    yy, xx = np.mgrid[0:height, 0:width]
    a, b = rng.uniform(-0.5, 0.5, size=2)
    base = rng.uniform(90, 160, size=3)
    bg = base[None, None, :] + 40 * (a * xx / width + b * yy / height)[..., None]
    img = bg + rng.normal(0, 6, size=(height, width, 3))
    shapes: List[Dict[str, Any]] = []
    boxes: List[Tuple[float, float, float, float]] = []
    n = int(rng.integers(1, max_shapes + 1))
    short = min(height, width)
    for _ in range(n * 20):  # rejection sampling for non-overlapping boxes
        if len(shapes) == n:
            break
        w = rng.uniform(0.22, 0.5) * short
        h = rng.uniform(0.22, 0.5) * short
        x0, y0 = rng.uniform(2, width - w - 2), rng.uniform(2, height - h - 2)
        box = (x0, y0, x0 + w, y0 + h)
        if any(not (box[2] + 3 < o[0] or o[2] + 3 < box[0] or box[3] + 3 < o[1] or o[3] + 3 < box[1])
               for o in boxes):
            continue
        kind = int(rng.integers(0, len(SHAPE_CLASSES)))
        poly = _polygon(kind, box, rng)
        canvas = Image.new('L', (width, height), 0)
        ImageDraw.Draw(canvas).polygon(list(zip(poly[0::2], poly[1::2])), fill=1)
        mask = np.asarray(canvas, dtype=bool)
        if mask.sum() < 16:
            continue
        colour = np.clip(_BASE_COLOURS[kind] + rng.normal(0, 15, size=3), 0, 255)
        img[mask] = colour + rng.normal(0, 4, size=(int(mask.sum()), 3))
        boxes.append(box)
        shapes.append({'class': kind, 'polygon': poly, 'mask': mask})
    return np.clip(img, 0, 255).astype(np.uint8), shapes


def _sizes(rng: np.random.Generator, size: Tuple[int, int], jitter: float) -> Tuple[int, int]:
    h, w = size
    return (int(round(h * rng.uniform(1 - jitter, 1 + jitter))), int(round(w * rng.uniform(1 - jitter, 1 + jitter))))


def _check_args(
        num_train: int, num_val: int, size: Sequence[int], size_jitter: float, max_shapes: int,
) -> Tuple[int, int]:
    """Refuse arguments that cannot make a data set; the nominal size as a pair of ints."""
    for name, value in (('num_train', num_train), ('num_val', num_val), ('max_shapes', max_shapes)):
        if int(value) != value or value < 1:
            raise ValueError(f'{name} must be an integer >= 1, got {value!r}')
    if len(size) != 2 or any(int(v) != v or v <= 0 for v in size):
        raise ValueError(f'size must be two positive integers (height, width), got {tuple(size)!r}')
    if not 0.0 <= size_jitter < 1.0:
        raise ValueError(f'size_jitter must be in [0, 1), got {size_jitter!r}')
    smallest = min(size) * (1 - size_jitter)
    if smallest < MIN_SIDE - 0.5:
        raise ValueError(f'size {tuple(size)!r} with size_jitter {size_jitter} makes images as small as '
                         f'{smallest:.1f} pixels; expected every side >= {MIN_SIDE}')
    return int(size[0]), int(size[1])


def make_synthetic_coco(
        out: str,
        num_train: int = 16,
        num_val: int = 8,
        size: Tuple[int, int] = (96, 128),
        size_jitter: float = 0.15,
        max_shapes: int = 3,
        seed: int = 0,
        splits: Sequence[str] = ('train2017', 'val2017'),
        force: bool = False,
) -> Dict[str, Any]:
    """Write a synthetic COCO instance-segmentation data set.

    Args:
        out: Root folder (created).
        num_train: Images in the first split.
        num_val: Images in the second split.
        size: Nominal (height, width); each image varies by ``size_jitter``.
        size_jitter: Relative size variation.
        max_shapes: Most shapes per image (at least 1).
        seed: Random seed (the same seed writes the same files).
        splits: Names of the two splits.
        force: Overwrite the files of an earlier data set in ``out`` (its annotation files and images of the same
            names); without it, such a file is an error and nothing is written. Other files are left alone.

    Returns:
        Summary: ``root``, per split ``images`` / ``annotations`` counts and files, ``categories``.

    Raises:
        ValueError: An argument is out of range (the message names it).
        FileExistsError: ``out`` holds a file this call would write, and ``force`` is False.
    """
    size = _check_args(num_train, num_val, size, size_jitter, max_shapes)
    splits = tuple(splits)
    if len(splits) != 2 or len(set(splits)) != 2 or not all(splits) or any(os.sep in p for p in splits):
        raise ValueError(f'splits must be two different folder names, got {splits!r}')
    counts = dict(zip(splits, (num_train, num_val)))
    first_id = {splits[0]: 1, splits[1]: num_train + 1}
    files = [os.path.join('annotations', f'instances_{split}.json') for split in splits]
    files += [os.path.join(split, f'{first_id[split] + i:012d}.jpg') for split in splits for i in range(counts[split])]
    refuse_existing(out, files, force, 'synthetic COCO data')
    rng = np.random.default_rng(seed)
    categories = [{'id': i + 1, 'name': n, 'supercategory': 'shape'} for i, n in enumerate(SHAPE_CLASSES)]
    summary: Dict[str, Any] = {'root': out, 'categories': [c['name'] for c in categories], 'splits': {}}
    ann_id = 1
    with staged_output(out) as stage:
        os.makedirs(os.path.join(stage, 'annotations'))
        for split in splits:
            os.makedirs(os.path.join(stage, split))
            images, annotations = _draw_coco_split(
                os.path.join(stage, split), first_id[split], ann_id, counts[split], size, size_jitter, max_shapes, rng)
            ann_id += len(annotations)
            data = {'info': {'description': 'stepsnet synthetic shapes (COCO format)'}, 'licenses': [],
                    'images': images, 'annotations': annotations, 'categories': categories}
            with open(os.path.join(stage, 'annotations', f'instances_{split}.json'), 'w', encoding='utf-8') as f:
                json.dump(data, f)
            summary['splits'][split] = {
                'images': len(images), 'annotations': len(annotations), 'image_dir': os.path.join(out, split),
                'ann_file': os.path.join(out, 'annotations', f'instances_{split}.json')}
    return summary


def _draw_coco_split(
        img_dir: str, image_id: int, ann_id: int, count: int, size: Tuple[int, int], size_jitter: float,
        max_shapes: int, rng: np.random.Generator,
) -> Tuple[List[Dict[str, Any]], List[Dict[str, Any]]]:
    """Draw and save ``count`` images numbered from ``image_id``; their COCO ``images`` and ``annotations``
    (numbered from ``ann_id``)."""
    images: List[Dict[str, Any]] = []
    annotations: List[Dict[str, Any]] = []
    for _ in range(count):
        h, w = _sizes(rng, size, size_jitter)
        img, shapes = draw_scene(h, w, rng, max_shapes)
        name = f'{image_id:012d}.jpg'
        Image.fromarray(img).save(os.path.join(img_dir, name), quality=95)
        images.append({'id': image_id, 'file_name': name, 'height': h, 'width': w})
        for s in shapes:
            ys, xs = np.nonzero(s['mask'])
            x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
            annotations.append({
                'id': ann_id, 'image_id': image_id, 'category_id': s['class'] + 1,
                'segmentation': [s['polygon']], 'area': float(s['mask'].sum()),
                'bbox': [float(x0), float(y0), float(x1 - x0), float(y1 - y0)], 'iscrowd': 0,
            })
            ann_id += 1
        image_id += 1
    return images, annotations


def make_synthetic_ade(
        out: str,
        num_train: int = 16,
        num_val: int = 8,
        size: Tuple[int, int] = (96, 128),
        size_jitter: float = 0.15,
        max_shapes: int = 3,
        seed: int = 0,
        outline: Optional[int] = 1,
        force: bool = False,
) -> Dict[str, Any]:
    """Write a synthetic semantic-segmentation data set in the ADE20K layout.

    Args:
        out: Root folder (``images/`` and ``annotations/`` are created in it).
        num_train: Images in ``training``.
        num_val: Images in ``validation``.
        size: Nominal (height, width); each image varies by ``size_jitter``.
        size_jitter: Relative size variation.
        max_shapes: Most shapes per image.
        seed: Random seed.
        outline: Width of the unlabelled (0) outline around each shape; ``None`` or 0 for none.
        force: Overwrite the files of an earlier data set in ``out`` (``classes.txt`` and images and annotations
            of the same names); without it, such a file is an error and nothing is written. Other files are left
            alone, with a warning when a split folder then holds more images than this call wrote (the loader
            reads every image of a split folder).

    Returns:
        Summary: ``root``, ``num_classes`` (4), ``classes`` and per split counts.

    Raises:
        ValueError: An argument is out of range (the message names it).
        FileExistsError: ``out`` holds a file this call would write, and ``force`` is False.
    """
    size = _check_args(num_train, num_val, size, size_jitter, max_shapes)
    if outline is not None and (int(outline) != outline or outline < 0):
        raise ValueError(f'outline must be None or an integer >= 0, got {outline!r}')
    layout = (('training', 'ADE_train', num_train), ('validation', 'ADE_val', num_val))
    files = ['classes.txt']
    for split, prefix, count in layout:
        for i in range(count):
            files += [os.path.join('images', split, f'{prefix}_{i + 1:08d}.jpg'),
                      os.path.join('annotations', split, f'{prefix}_{i + 1:08d}.png')]
    refuse_existing(out, files, force, 'synthetic ADE20K data')
    rng = np.random.default_rng(seed)
    summary: Dict[str, Any] = {'root': out, 'num_classes': len(ADE_SYNTH_CLASSES),
                               'classes': list(ADE_SYNTH_CLASSES), 'splits': {}}
    with staged_output(out) as stage:
        for split, prefix, count in layout:
            img_dir = os.path.join(stage, 'images', split)
            ann_dir = os.path.join(stage, 'annotations', split)
            os.makedirs(img_dir)
            os.makedirs(ann_dir)
            for i in range(count):
                h, w = _sizes(rng, size, size_jitter)
                img, shapes = draw_scene(h, w, rng, max_shapes)
                label = Image.new('L', (w, h), 1)
                draw = ImageDraw.Draw(label)
                for s in shapes:
                    pts = list(zip(s['polygon'][0::2], s['polygon'][1::2]))
                    draw.polygon(pts, fill=s['class'] + 2)
                    if outline:
                        draw.line(pts + pts[:1], fill=0, width=outline)
                name = f'{prefix}_{i + 1:08d}'
                Image.fromarray(img).save(os.path.join(img_dir, name + '.jpg'), quality=95)
                label.save(os.path.join(ann_dir, name + '.png'))
            summary['splits'][split] = {'images': count, 'image_dir': os.path.join(out, 'images', split),
                                        'ann_dir': os.path.join(out, 'annotations', split)}
        with open(os.path.join(stage, 'classes.txt'), 'w', encoding='utf-8') as f:
            f.write('\n'.join(ADE_SYNTH_CLASSES) + '\n')
    for v in summary['splits'].values():
        held = len(os.listdir(v['image_dir']))
        if held > v['images']:
            warnings.warn(f'{v["image_dir"]} holds {held} files, {held - v["images"]} more than the images written '
                          'now: they are from before; remove the folder for a data set of only the new images',
                          stacklevel=2)
    return summary
