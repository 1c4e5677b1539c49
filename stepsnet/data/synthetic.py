"""Small synthetic data sets in the real COCO and ADE20K formats: coloured shapes with exact masks.

They let a fresh machine run detection and segmentation end to end (real loaders, real evaluators) without
downloading anything. Each image has a smooth, noisy background and 1 to ``max_shapes`` non-overlapping shapes
(rectangle, ellipse, triangle); a shape's class decides its hue family, so a small model can learn it quickly.

* COCO: ``<out>/{train2017,val2017}/<id>.jpg`` and ``<out>/annotations/instances_{train2017,val2017}.json``
  (polygons, ``bbox`` as x, y, w, h, ``area``, ``iscrowd`` 0, categories 1..3).
* ADE20K: ``<out>/images/{training,validation}/ADE_*.jpg`` and ``<out>/annotations/.../ADE_*.png`` with
  label 0 = unlabelled (ignored; the one-pixel outline of each shape), 1 = background, 2..4 = the shapes.
"""
import json
import math
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw

from stepsnet.utils import atomic_write_text

__all__ = ['SHAPE_CLASSES', 'ADE_SYNTH_CLASSES', 'make_synthetic_coco', 'make_synthetic_ade', 'draw_scene']

SHAPE_CLASSES = ('rectangle', 'ellipse', 'triangle')
ADE_SYNTH_CLASSES = ('background',) + SHAPE_CLASSES
_BASE_COLOURS = np.array([[220, 60, 50], [50, 170, 70], [60, 90, 220]], dtype=np.float64)


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


def make_synthetic_coco(
        out: str,
        num_train: int = 16,
        num_val: int = 8,
        size: Tuple[int, int] = (96, 128),
        size_jitter: float = 0.15,
        max_shapes: int = 3,
        seed: int = 0,
        splits: Sequence[str] = ('train2017', 'val2017'),
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

    Returns:
        Summary: ``root``, per split ``images`` / ``annotations`` counts and files, ``categories``.
    """
    if num_train < 1 or num_val < 1:
        raise ValueError(f'need at least one image per split, got num_train={num_train}, num_val={num_val}')
    rng = np.random.default_rng(seed)
    categories = [{'id': i + 1, 'name': n, 'supercategory': 'shape'} for i, n in enumerate(SHAPE_CLASSES)]
    summary: Dict[str, Any] = {'root': out, 'categories': [c['name'] for c in categories], 'splits': {}}
    image_id, ann_id = 1, 1
    for split, count in zip(splits, (num_train, num_val)):
        img_dir = os.path.join(out, split)
        os.makedirs(img_dir, exist_ok=True)
        images, annotations = [], []
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
        ann_file = os.path.join(out, 'annotations', f'instances_{split}.json')
        os.makedirs(os.path.dirname(ann_file), exist_ok=True)
        data = {'info': {'description': 'stepsnet synthetic shapes (COCO format)'}, 'licenses': [],
                'images': images, 'annotations': annotations, 'categories': categories}
        atomic_write_text(ann_file, json.dumps(data))
        summary['splits'][split] = {'images': len(images), 'annotations': len(annotations),
                                    'image_dir': img_dir, 'ann_file': ann_file}
    return summary


def make_synthetic_ade(
        out: str,
        num_train: int = 16,
        num_val: int = 8,
        size: Tuple[int, int] = (96, 128),
        size_jitter: float = 0.15,
        max_shapes: int = 3,
        seed: int = 0,
        outline: Optional[int] = 1,
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

    Returns:
        Summary: ``root``, ``num_classes`` (4), ``classes`` and per split counts.
    """
    if num_train < 1 or num_val < 1:
        raise ValueError(f'need at least one image per split, got num_train={num_train}, num_val={num_val}')
    rng = np.random.default_rng(seed)
    summary: Dict[str, Any] = {'root': out, 'num_classes': len(ADE_SYNTH_CLASSES),
                               'classes': list(ADE_SYNTH_CLASSES), 'splits': {}}
    for split, prefix, count in (('training', 'ADE_train', num_train), ('validation', 'ADE_val', num_val)):
        img_dir = os.path.join(out, 'images', split)
        ann_dir = os.path.join(out, 'annotations', split)
        os.makedirs(img_dir, exist_ok=True)
        os.makedirs(ann_dir, exist_ok=True)
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
        summary['splits'][split] = {'images': count, 'image_dir': img_dir, 'ann_dir': ann_dir}
    atomic_write_text(os.path.join(out, 'classes.txt'), '\n'.join(ADE_SYNTH_CLASSES) + '\n')
    return summary
