"""Scenes of coloured shapes with exact masks: the pictures of the generated data sets.

Each scene has a smooth, noisy background and 1 to ``max_shapes`` non-overlapping shapes (rectangle, ellipse,
triangle); a shape's class decides its hue family, so a small model can learn it quickly. The writers of
:mod:`stepsnet.data.layouts` put the scenes into the on-disk layouts of the paper's data sets, labelled with those
data sets' classes or, with ``shape_classes=True``, with the shape classes below (what ``stepsnet data synth-coco``
and ``synth-ade`` write for the CPU end-to-end checks, ``configs/det/synthetic.yaml`` and
``configs/seg/synthetic.yaml``).
"""
import math
from typing import Any, Dict, List, Tuple

import numpy as np
from PIL import Image, ImageDraw

__all__ = ['SHAPE_CLASSES', 'ADE_SYNTH_CLASSES', 'draw_scene']

SHAPE_CLASSES = ('rectangle', 'ellipse', 'triangle')  # COCO category ids 1..3 with shape_classes=True
# the ADE20K-layout classes with shape_classes=True: label 1 = background, 2..4 = the shapes (0 stays "other")
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
