"""Small data sets in the on-disk layouts of ImageNet-1K, COCO 2017, ADE20K and WikiText-103, generated locally.

They exist for dry runs and tests of the full-size recipes (``configs/cls/*_imagenet.yaml``,
``configs/cls/resnet50_rsb_a2.yaml``, ``configs/det/mask_rcnn_*.yaml``, ``configs/seg/upernet_*.yaml``,
``configs/lm/{small,medium,large}.yaml``): the recipe's own loaders read the files exactly as they read the real
data sets, at the recipe's model and input sizes, without downloading anything. The content is generated (smooth
backgrounds with shapes, :mod:`stepsnet.data.scenes`, and made-up encyclopaedic text), so nothing trained on it
means anything. With ``shape_classes=True`` the COCO and ADE20K writers label each shape with its own class
(rectangle, ellipse, triangle) instead of one of the data set's classes drawn at random: that is the data of
``stepsnet data synth-coco`` and ``synth-ade``, which a small model learns in minutes on a CPU
(``configs/det/synthetic.yaml``, ``configs/seg/synthetic.yaml``).

* ImageNet-1K (:func:`write_imagenet`): ``<root>/train/<wnid>/<wnid>_<n>.JPEG`` and
  ``<root>/val/<wnid>/ILSVRC2012_val_<n>.JPEG`` (the validation images sorted into class folders, as most
  training code expects), with WordNet ids as class folder names (the first classes of ImageNet-1K's sorted list).
  JPEGs of varied sizes and aspect ratios, landscape and portrait, and, as in the real training set, one
  greyscale and one CMYK JPEG among the RGB ones.
* COCO 2017 (:func:`write_coco`): ``<root>/train2017/<12-digit id>.jpg``, ``<root>/val2017/...`` and
  ``<root>/annotations/instances_{train2017,val2017}.json`` listing COCO's 80 categories (ids 1..90 with COCO's
  gaps, names and supercategories), polygon instances and, in the first image of each split, a crowd region
  (``iscrowd`` 1) stored as an uncompressed RLE as COCO stores them. Images around 640x480, some portrait. With
  ``shape_classes=True``: categories 1..3, the shape classes, and no crowd.
* ADE20K (:func:`write_ade20k`): the ``ADEChallengeData2016`` folder: ``<root>/images/{training,validation}/
  ADE_{train,val}_<8 digits>.jpg`` and ``<root>/annotations/{training,validation}/<same stem>.png``, 8-bit label
  maps with values 0..150 (0 = "other", unlabelled, ignored in training and scoring; here the boundary of each
  object and a few stray pixels). With ``shape_classes=True``: 1 = background, 2..4 = the shape classes, and
  ``<root>/classes.txt`` naming them.
* WikiText-103 (:func:`write_wikitext103`): the raw release's ``wiki.train.raw``, ``wiki.valid.raw`` and
  ``wiki.test.raw`` (`` = Title = `` / `` = = Section = = `` headings between blank lines, one paragraph a line,
  tokens separated by spaces, ``@-@``, ``@,@`` and ``@.@`` inside words and numbers), beside GPT-2 style
  ``vocab.json`` and ``merges.txt``: a byte-level BPE trained on the training text with Hugging Face
  ``tokenizers``, padded with merges of byte pairs to GPT-2's 50,257 ids (``<|endoftext|>`` last), so that the
  language models' embedding and output layers have the shape they have on the real data.

:func:`write_layout` writes the layout a task's recipes read and returns the ``data_dir`` to give them (for
``lm``, a folder already prepared by :func:`~stepsnet.data.text.prepare_text`).

Every writer is deterministic given its ``seed``, refuses to overwrite the files of an earlier data set unless
``force=True``, and writes through a temporary folder (:mod:`stepsnet.data.outputs`), so a failure leaves the
output folder as it was.
"""
import atexit
import json
import os
import shutil
import tempfile
import warnings
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw

from stepsnet.utils.dryrun import Resized
from stepsnet.utils.tasks import TASK_NAMES, TASKS, resolve

from .outputs import refuse_existing, staged_output
from .scenes import ADE_SYNTH_CLASSES, SHAPE_CLASSES, draw_scene

__all__ = [
    'FULL_SIZES', 'dry_run_data_dir', 'dry_run_sets',
    'LAYOUT_TASKS', 'COCO_CATEGORIES', 'IMAGENET_FIRST_WNIDS', 'GPT2_VOCAB_SIZE', 'write_imagenet', 'write_coco',
    'write_ade20k', 'write_wikitext103', 'write_wikitext103_tokens', 'write_layout',
]

LAYOUT_TASKS = TASK_NAMES
GPT2_VOCAB_SIZE = 50257
EOT = '<|endoftext|>'

# The first classes of ImageNet-1K in its sorted WordNet-id order (tench, goldfish, ..., robin); more classes get
# ids of the same form after these.
IMAGENET_FIRST_WNIDS = (
    'n01440764', 'n01443537', 'n01484850', 'n01491361', 'n01494475', 'n01496331', 'n01498041', 'n01514668',
    'n01514859', 'n01518878', 'n01530575', 'n01531178', 'n01532829', 'n01534433', 'n01537544', 'n01558993',
)

# COCO's 80 instance categories: (id, name, supercategory), ids 1..90 with the gaps of the released files.
COCO_CATEGORIES: Tuple[Tuple[int, str, str], ...] = (
    (1, 'person', 'person'), (2, 'bicycle', 'vehicle'), (3, 'car', 'vehicle'), (4, 'motorcycle', 'vehicle'),
    (5, 'airplane', 'vehicle'), (6, 'bus', 'vehicle'), (7, 'train', 'vehicle'), (8, 'truck', 'vehicle'),
    (9, 'boat', 'vehicle'), (10, 'traffic light', 'outdoor'), (11, 'fire hydrant', 'outdoor'),
    (13, 'stop sign', 'outdoor'), (14, 'parking meter', 'outdoor'), (15, 'bench', 'outdoor'),
    (16, 'bird', 'animal'), (17, 'cat', 'animal'), (18, 'dog', 'animal'), (19, 'horse', 'animal'),
    (20, 'sheep', 'animal'), (21, 'cow', 'animal'), (22, 'elephant', 'animal'), (23, 'bear', 'animal'),
    (24, 'zebra', 'animal'), (25, 'giraffe', 'animal'), (27, 'backpack', 'accessory'),
    (28, 'umbrella', 'accessory'), (31, 'handbag', 'accessory'), (32, 'tie', 'accessory'),
    (33, 'suitcase', 'accessory'), (34, 'frisbee', 'sports'), (35, 'skis', 'sports'), (36, 'snowboard', 'sports'),
    (37, 'sports ball', 'sports'), (38, 'kite', 'sports'), (39, 'baseball bat', 'sports'),
    (40, 'baseball glove', 'sports'), (41, 'skateboard', 'sports'), (42, 'surfboard', 'sports'),
    (43, 'tennis racket', 'sports'), (44, 'bottle', 'kitchen'), (46, 'wine glass', 'kitchen'),
    (47, 'cup', 'kitchen'), (48, 'fork', 'kitchen'), (49, 'knife', 'kitchen'), (50, 'spoon', 'kitchen'),
    (51, 'bowl', 'kitchen'), (52, 'banana', 'food'), (53, 'apple', 'food'), (54, 'sandwich', 'food'),
    (55, 'orange', 'food'), (56, 'broccoli', 'food'), (57, 'carrot', 'food'), (58, 'hot dog', 'food'),
    (59, 'pizza', 'food'), (60, 'donut', 'food'), (61, 'cake', 'food'), (62, 'chair', 'furniture'),
    (63, 'couch', 'furniture'), (64, 'potted plant', 'furniture'), (65, 'bed', 'furniture'),
    (67, 'dining table', 'furniture'), (70, 'toilet', 'furniture'), (72, 'tv', 'electronic'),
    (73, 'laptop', 'electronic'), (74, 'mouse', 'electronic'), (75, 'remote', 'electronic'),
    (76, 'keyboard', 'electronic'), (77, 'cell phone', 'electronic'), (78, 'microwave', 'appliance'),
    (79, 'oven', 'appliance'), (80, 'toaster', 'appliance'), (81, 'sink', 'appliance'),
    (82, 'refrigerator', 'appliance'), (84, 'book', 'indoor'), (85, 'clock', 'indoor'), (86, 'vase', 'indoor'),
    (87, 'scissors', 'indoor'), (88, 'teddy bear', 'indoor'), (89, 'hair drier', 'indoor'),
    (90, 'toothbrush', 'indoor'),
)
COCO_MAX_IMAGE_ID = 581929  # the largest image id of COCO 2017; ids are drawn below it, as COCO's are sparse

ADE_NUM_CLASSES = 150
# ADE20K (150-class) ids of scene classes that fill a background: wall, building, sky, floor, tree, ceiling, road,
# grass, sidewalk, earth, mountain, water, field, sand.
_ADE_UPPER = (1, 2, 3, 5, 6, 17)
_ADE_LOWER = (4, 7, 10, 12, 14, 22, 30, 47)

MIN_SIDE = 32


# ----------------------------------------------------------------------------------------------------- checks

def _check_count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f'{name} must be an integer >= 1, got {value!r}')
    return int(value)


def _check_size(size: Sequence[int]) -> Tuple[int, int]:
    if len(size) != 2 or any(isinstance(v, bool) or int(v) != v or v < MIN_SIDE for v in size):
        raise ValueError(f'size must be two integers (width, height), each >= {MIN_SIDE}, got {tuple(size)!r}')
    return int(size[0]), int(size[1])


def _vary(size: Tuple[int, int], index: int, rng: np.random.Generator, spread: float) -> Tuple[int, int]:
    """``(width, height)`` near ``size``: the long side kept, the short one shrunk by up to ``spread``, and every
    third image turned to portrait (landscape ``size``) or landscape (portrait ``size``)."""
    w, h = size
    if w >= h:
        h = max(MIN_SIDE, int(round(h * rng.uniform(1 - spread, 1.0))))
    else:
        w = max(MIN_SIDE, int(round(w * rng.uniform(1 - spread, 1.0))))
    return (h, w) if index % 3 == 2 else (w, h)


def _jpeg(img: np.ndarray, path: str, mode: str = 'RGB', quality: int = 90) -> None:
    pil = Image.fromarray(img)
    if mode != 'RGB':
        pil = pil.convert(mode)
    pil.save(path, format='JPEG', quality=quality)


# ----------------------------------------------------------------------------------------------------- ImageNet

def _wnids(classes: int) -> List[str]:
    first = list(IMAGENET_FIRST_WNIDS[:classes])
    return first + [f'n{99000000 + k:08d}' for k in range(classes - len(first))]


def write_imagenet(root: str, classes: int = 4, per_class: int = 2, seed: int = 0, force: bool = False) -> str:
    """Write a small ImageNet-1K layout: ``root/{train,val}/<wnid>/<name>.JPEG``.

    Each split gets ``per_class`` images per class, 150 to 500 pixels a side in aspect ratios up to 1.6, landscape
    or portrait. The last training image of the first class is a greyscale JPEG and that of the second a CMYK JPEG
    (ImageNet's training set has both); the loaders convert them to RGB.

    Args:
        root: Data set root (created); the ``data_dir`` of the classification recipes.
        classes: Number of class folders (the recipes' models take their number of classes from the data unless
            ``num_classes`` is set).
        per_class: Images per class in each split.
        seed: Random seed (the same seed writes the same bytes).
        force: Overwrite the files of an earlier data set of the same names.

    Returns:
        ``root``.
    """
    classes, per_class = _check_count('classes', classes), _check_count('per_class', per_class)
    rng = np.random.default_rng(seed)
    wnids = _wnids(classes)
    train_numbers = [np.sort(rng.choice(np.arange(1, 15000), per_class, replace=False)) for _ in wnids]
    val_numbers = (rng.permutation(classes * per_class) + 1).reshape(classes, per_class)
    files: List[Tuple[str, str]] = []  # (relative path, JPEG mode)
    for c, wnid in enumerate(wnids):
        for i in range(per_class):
            mode = 'L' if (c, i) == (0, per_class - 1) else 'CMYK' if (c, i) == (1, per_class - 1) else 'RGB'
            files.append((os.path.join('train', wnid, f'{wnid}_{train_numbers[c][i]}.JPEG'), mode))
        for i in range(per_class):
            files.append((os.path.join('val', wnid, f'ILSVRC2012_val_{val_numbers[c][i]:08d}.JPEG'), 'RGB'))
    refuse_existing(root, [f[0] for f in files], force, 'an ImageNet-layout data set')
    with staged_output(root) as stage:
        for split in ('train', 'val'):
            for wnid in wnids:
                os.makedirs(os.path.join(stage, split, wnid))
        for rel, mode in files:
            long = int(rng.integers(240, 501)) if rng.random() < 0.9 else int(rng.integers(150, 240))
            short = max(150, int(round(long / rng.uniform(1.0, 1.6))))
            w, h = (long, short) if rng.random() < 0.7 else (short, long)
            img, _ = draw_scene(h, w, rng, max_shapes=3)
            _jpeg(img, os.path.join(stage, rel), mode, quality=int(rng.integers(75, 96)))
    return root


# ----------------------------------------------------------------------------------------------------- COCO

def _run_lengths(mask: np.ndarray) -> List[int]:
    """COCO's uncompressed RLE counts of a binary mask: alternating runs of 0 and 1 in column-major order,
    starting with a (possibly empty) run of 0."""
    flat = mask.ravel(order='F').astype(np.int8)
    bounds = np.concatenate([[0], np.flatnonzero(np.diff(flat)) + 1, [flat.size]])
    runs = np.diff(bounds).tolist()
    return ([0] + runs) if flat[0] else runs


def _crowd(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A crowd region: many small overlapping ellipses in a band across the lower part of the image."""
    canvas = Image.new('L', (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    top = rng.uniform(0.45, 0.6) * height
    x0, x1 = rng.uniform(0.05, 0.3) * width, rng.uniform(0.7, 0.95) * width
    for _ in range(24):
        cx, cy = rng.uniform(x0, x1), rng.uniform(top, top + 0.25 * height)
        rx, ry = rng.uniform(0.015, 0.04) * width, rng.uniform(0.04, 0.1) * height
        draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=1)
    return np.asarray(canvas, dtype=bool)


def _coco_split(
        img_dir: str, image_ids: Sequence[int], ann_id: int, size: Tuple[int, int], rng: np.random.Generator,
        shape_classes: bool, max_shapes: int,
) -> Tuple[List[Dict[str, Any]], List[Dict[str, Any]]]:
    """Draw and save the images of a split; their COCO ``images`` and ``annotations`` (numbered from ``ann_id``)."""
    from pycocotools import mask as mask_utils
    images: List[Dict[str, Any]] = []
    annotations: List[Dict[str, Any]] = []
    cat_ids = [c[0] for c in COCO_CATEGORIES]
    for index, image_id in enumerate(image_ids):
        w, h = _vary(size, index, rng, 0.12)
        img, shapes = draw_scene(h, w, rng, max_shapes=max_shapes)
        for s in shapes:
            poly = s['polygon']
            rle = mask_utils.merge(mask_utils.frPyObjects([poly], h, w))
            xs, ys = poly[0::2], poly[1::2]
            annotations.append({
                'segmentation': [poly], 'area': float(mask_utils.area(rle)), 'iscrowd': 0, 'image_id': image_id,
                'bbox': [round(min(xs), 2), round(min(ys), 2), round(max(xs) - min(xs), 2),
                         round(max(ys) - min(ys), 2)],
                'category_id': s['class'] + 1 if shape_classes else int(rng.choice(cat_ids)),
                'id': ann_id + len(annotations)})
        if index == 0 and not shape_classes:  # a crowd of people over the scene (COCO's crowds overlap objects)
            crowd = _crowd(h, w, rng)
            img[crowd] = np.clip(rng.normal(70, 25, size=(int(crowd.sum()), 3)), 0, 255).astype(np.uint8)
            rle = mask_utils.encode(np.asfortranarray(crowd.astype(np.uint8)))
            annotations.append({
                'segmentation': {'counts': _run_lengths(crowd), 'size': [h, w]},
                'area': float(mask_utils.area(rle)), 'iscrowd': 1, 'image_id': image_id,
                'bbox': [float(v) for v in mask_utils.toBbox(rle)], 'category_id': 1,
                'id': ann_id + len(annotations)})
        name = f'{image_id:012d}.jpg'
        _jpeg(img, os.path.join(img_dir, name))
        images.append({'file_name': name, 'height': h, 'width': w, 'id': image_id})
    return images, annotations


def write_coco(
        root: str,
        train_images: int = 3,
        val_images: int = 2,
        size: Tuple[int, int] = (640, 480),
        seed: int = 0,
        force: bool = False,
        *,
        shape_classes: bool = False,
        max_shapes: int = 5,
) -> str:
    """Write a small COCO 2017 layout: ``train2017/``, ``val2017/`` and ``annotations/instances_*.json``.

    Both annotation files list COCO's 80 categories (:data:`COCO_CATEGORIES`); instances are polygons with
    categories drawn at random, and the first image of each split also holds a crowd (``person``, ``iscrowd`` 1,
    uncompressed RLE), which training leaves out and evaluation counts as COCO does. Image ids are drawn at random
    below COCO 2017's largest, as COCO's are sparse; file names are the 12-digit ids.

    Args:
        root: Data set root (created); the ``data_dir`` of the detection recipes.
        train_images: Images in ``train2017``.
        val_images: Images in ``val2017``.
        size: Nominal (width, height); the short side varies by up to 12% and every third image is turned.
        seed: Random seed (the same seed writes the same bytes).
        force: Overwrite the files of an earlier data set of the same names.
        shape_classes: List the shape classes (:data:`~stepsnet.data.scenes.SHAPE_CLASSES`, ids 1..3) as the
            categories, an instance's category being its shape, and no crowd: a data set a small model learns.
        max_shapes: Most instances per image (at least 1).

    Returns:
        ``root``.
    """
    counts = {'train2017': _check_count('train_images', train_images),
              'val2017': _check_count('val_images', val_images)}
    size, max_shapes = _check_size(size), _check_count('max_shapes', max_shapes)
    rng = np.random.default_rng(seed)
    ids = [int(i) + 1 for i in rng.choice(COCO_MAX_IMAGE_ID, sum(counts.values()), replace=False)]
    split_ids = {'train2017': sorted(ids[:counts['train2017']]), 'val2017': sorted(ids[counts['train2017']:])}
    files = [os.path.join('annotations', f'instances_{split}.json') for split in counts]
    files += [os.path.join(split, f'{i:012d}.jpg') for split, group in split_ids.items() for i in group]
    refuse_existing(root, files, force, 'a COCO-layout data set')
    categories = [{'supercategory': s, 'id': i, 'name': n} for i, n, s in COCO_CATEGORIES]
    if shape_classes:
        categories = [{'supercategory': 'shape', 'id': i + 1, 'name': n} for i, n in enumerate(SHAPE_CLASSES)]
    ann_id = int(rng.integers(1, 10 ** 6))
    with staged_output(root) as stage:
        os.makedirs(os.path.join(stage, 'annotations'))
        for split, group in split_ids.items():
            os.makedirs(os.path.join(stage, split))
            images, annotations = _coco_split(os.path.join(stage, split), group, ann_id, size, rng, shape_classes,
                                              max_shapes)
            ann_id += len(annotations)
            data = {
                'info': {'description': f'COCO 2017 layout ({split}), generated for dry runs: not COCO images',
                         'version': '1.0', 'year': 2017},
                'licenses': [], 'images': images, 'annotations': annotations, 'categories': categories}
            with open(os.path.join(stage, 'annotations', f'instances_{split}.json'), 'w', encoding='utf-8') as f:
                json.dump(data, f)
    return root


# ----------------------------------------------------------------------------------------------------- ADE20K

def write_ade20k(
        root: str,
        train_images: int = 3,
        val_images: int = 2,
        size: Tuple[int, int] = (683, 512),
        seed: int = 0,
        force: bool = False,
        *,
        shape_classes: bool = False,
        max_shapes: int = 4,
) -> str:
    """Write a small ADEChallengeData2016 layout: ``images/`` and ``annotations/``, ``training`` and ``validation``.

    Each label map splits the image into an upper and a lower scene class (such as sky over road, or wall over
    floor) with objects of random classes 1..150 on it; the one-pixel boundary of each object and a few scattered
    pixels are 0 ("other"), which ADE20K training and scoring ignore. A split folder that then holds more images
    than were written (from an earlier data set, kept by ``force``) is named in a warning, as the loader reads
    every image of a split folder.

    Args:
        root: The ``ADEChallengeData2016`` folder (created); the ``data_dir`` of the segmentation recipes.
        train_images: Images in ``training``.
        val_images: Images in ``validation``.
        size: Nominal (width, height); the short side varies by up to 25% and every third image is turned.
        seed: Random seed (the same seed writes the same bytes).
        force: Overwrite the files of an earlier data set of the same names.
        shape_classes: Label the background 1 and each object 2..4 by its shape
            (:data:`~stepsnet.data.scenes.ADE_SYNTH_CLASSES`, written to ``classes.txt``; ``num_classes: 4``):
            a data set a small model learns.
        max_shapes: Most objects per image (at least 1).

    Returns:
        ``root``.
    """
    layout = (('training', 'ADE_train', _check_count('train_images', train_images)),
              ('validation', 'ADE_val', _check_count('val_images', val_images)))
    size, max_shapes = _check_size(size), _check_count('max_shapes', max_shapes)
    files = ['classes.txt'] if shape_classes else []
    for split, prefix, count in layout:
        for i in range(count):
            files += [os.path.join('images', split, f'{prefix}_{i + 1:08d}.jpg'),
                      os.path.join('annotations', split, f'{prefix}_{i + 1:08d}.png')]
    refuse_existing(root, files, force, 'an ADE20K-layout data set')
    rng = np.random.default_rng(seed)
    with staged_output(root) as stage:
        for split, prefix, count in layout:
            img_dir, ann_dir = os.path.join(stage, 'images', split), os.path.join(stage, 'annotations', split)
            os.makedirs(img_dir)
            os.makedirs(ann_dir)
            for i in range(count):
                w, h = _vary(size, i, rng, 0.25)
                img, shapes = draw_scene(h, w, rng, max_shapes=max_shapes)
                horizon = int(rng.uniform(0.35, 0.65) * h)
                lower, upper_class = int(rng.choice(_ADE_LOWER)), int(rng.choice(_ADE_UPPER))
                label = np.full((h, w), 1 if shape_classes else lower, dtype=np.uint8)
                label[:horizon] = 1 if shape_classes else upper_class
                upper = np.zeros((h, w), dtype=bool)
                upper[:horizon] = True
                for s in shapes:
                    upper &= ~s['mask']
                img[upper] = np.minimum(img[upper].astype(np.int16) + 40, 255).astype(np.uint8)  # lighter above
                canvas = Image.fromarray(label)
                draw = ImageDraw.Draw(canvas)
                for s in shapes:
                    pts = list(zip(s['polygon'][0::2], s['polygon'][1::2]))
                    random_class = int(rng.integers(1, ADE_NUM_CLASSES + 1))
                    draw.polygon(pts, fill=s['class'] + 2 if shape_classes else random_class)
                    draw.line(pts + pts[:1], fill=0, width=1)
                label = np.array(canvas)
                stray = rng.random((h, w)) < 0.002
                label[stray] = 0
                name = f'{prefix}_{i + 1:08d}'
                _jpeg(img, os.path.join(img_dir, name + '.jpg'))
                Image.fromarray(label, mode='L').save(os.path.join(ann_dir, name + '.png'))
        if shape_classes:
            with open(os.path.join(stage, 'classes.txt'), 'w', encoding='utf-8') as f:
                f.write('\n'.join(ADE_SYNTH_CLASSES) + '\n')
    for split, _, count in layout:
        img_dir = os.path.join(root, 'images', split)
        held = len(os.listdir(img_dir))
        if held > count:
            warnings.warn(f'{img_dir} holds {held} files, {held - count} more than the images written now: they are '
                          'from before; remove the folder for a data set of only the new images', stacklevel=2)
    return root


# ----------------------------------------------------------------------------------------------------- WikiText-103

_FUNCTION_WORDS = (
    'the', 'of', 'and', 'in', 'to', 'a', 'was', 'is', 'for', 'on', 'as', 'by', 'with', 'he', 'at', 'from', 'his',
    'that', 'it', 'were', 'an', 'which', 'also', 'had', 'after', 'be', 'are', 'their', 'first', 'this', 'her',
    'but', 'its', 'they', 'she', 'been', 'not', 'who', 'new', 'one', 'two', 'has', 'during', 'into', 'other',
    'would', 'more', 'there', 'when', 'all', 'later', 'only', 'most', 'over', 'between', 'three', 'while', 'before',
    'where', 'both', 'through', 'city', 'season', 'war', 'game', 'film', 'album', 'song', 'team', 'station',
    'river', 'church', 'army', 'school', 'year', 'years', 'series', 'time', 'world', 'national', 'early', 'second',
)
_SYLLABLES = (
    'ka', 'ro', 'ven', 'dal', 'mi', 'tor', 'sen', 'la', 'bri', 'gan', 'hel', 'mo', 'rin', 'tha', 'vel', 'cor', 'an',
    'is', 'um', 'ber', 'do', 'fen', 'gar', 'lo', 'mar', 'nes', 'pel', 'qui', 'ras', 'sto', 'ul', 'wen', 'yor',
    'ed', 'ing', 'al', 'er', 'on', 'ti', 'ca', 'ne', 'se', 'ré', 'jō', 'ür',
)
_SECTIONS = ('History', 'Background', 'Career', 'Reception', 'Legacy', 'Description', 'Geography', 'Production',
             'Release', 'Early life', 'Plot', 'Personal life', 'Design', 'Aftermath', 'Route description')
_SUBSECTIONS = ('Early years', 'Critical response', 'Construction', 'Later years', 'Casting', 'Commercial performance')


class _Draws:
    """Random draws taken from ``rng`` in chunks (one numpy call per chunk rather than per word)."""

    def __init__(self, rng: np.random.Generator, cdf: Optional[np.ndarray] = None, chunk: int = 16384):
        self.rng, self.cdf, self.chunk = rng, cdf, chunk
        self.buf: List[float] = []
        self.i = 0

    def __call__(self) -> float:
        if self.i == len(self.buf):
            u = self.rng.random(self.chunk)
            self.buf = (np.searchsorted(self.cdf, u, side='right') if self.cdf is not None else u).tolist()
            self.i = 0
        self.i += 1
        return self.buf[self.i - 1]


def _zipf_cdf(n: int, offset: float) -> np.ndarray:
    """Cumulative probabilities of ranks 0..n-1 under Zipf's law, 1 / (rank + offset)."""
    cdf = np.cumsum(1.0 / (np.arange(n) + offset))
    cdf /= cdf[-1]
    cdf[-1] = 1.0
    return cdf


class _Prose:
    """Made-up encyclopaedic text tokenised as WikiText-103 is (spaces around punctuation, ``@-@`` hyphens)."""

    def __init__(self, rng: np.random.Generator, lexicon: int = 3000, names: int = 400):
        syl = np.array(_SYLLABLES)
        words = set()
        while len(words) < lexicon + names:
            words.add(''.join(syl[rng.integers(0, len(syl), int(rng.integers(2, 5)))]))
        words = sorted(words)
        order = rng.permutation(len(words))
        self.names = [words[k].capitalize() for k in order[:names]]
        self.words = list(_FUNCTION_WORDS) + [words[k] for k in order[names:]]
        self.u = _Draws(rng)
        self.word = _Draws(rng, _zipf_cdf(len(self.words), 2.7))
        self.name_rank = _Draws(rng, _zipf_cdf(names, 2.0))

    def integer(self, lo: int, hi: int) -> int:
        """An integer in [lo, hi)."""
        return lo + int(self.u() * (hi - lo))

    def name(self, parts: int = 1) -> str:
        return ' '.join(self.names[self.name_rank()] for _ in range(parts))

    def _number(self) -> str:
        kind = self.u()
        if kind < 0.45:
            return str(self.integer(1800, 2016))
        if kind < 0.7:
            return f'{self.integer(1, 999)} @,@ {self.integer(0, 1000):03d}'
        if kind < 0.85:
            return f'{self.integer(0, 100)} @.@ {self.integer(0, 10)}'
        return str(self.integer(2, 60))

    def sentence(self) -> Tuple[str, int]:
        """A sentence and its number of words."""
        n = self.integer(8, 28)
        out: List[str] = []
        for _ in range(n):
            w, x = self.words[self.word()], self.u()
            if x < 0.06:
                w = self.name(self.integer(1, 3))
            elif x < 0.09:
                w = self._number()
            elif x < 0.11:
                w = f'{w} @-@ {self.words[self.word()]}'
            elif x < 0.13:
                w = f"{self.name()} 's"
            elif x < 0.14:
                w = f'( {w} {self._number()} )'
            elif x < 0.15:
                w = f'" {w} {self.words[self.integer(len(_FUNCTION_WORDS), len(self.words))]} "'
            out.append(w)
            if 3 < len(out) < n - 2 and self.u() < 0.08:
                out.append(',' if self.u() < 0.85 else ';')
        out[0] = out[0][0].upper() + out[0][1:]
        return ' '.join(out) + ' .', n

    def paragraph(self) -> Tuple[str, int]:
        parts = [self.sentence() for _ in range(self.integer(2, 7))]
        return ' ' + ' '.join(p[0] for p in parts) + ' \n', sum(p[1] for p in parts)

    def article(self) -> Tuple[str, int]:
        """One article: title, lead paragraphs, sections (some with subsections); and its number of words."""
        lines = [' \n', f' = {self.name(self.integer(1, 4))} = \n', ' \n']
        count = 0

        def paragraphs(k: int) -> None:
            nonlocal count
            for _ in range(k):
                text, n = self.paragraph()
                lines.append(text)
                count += n

        paragraphs(self.integer(1, 4))
        sections = list(_SECTIONS)
        for _ in range(self.integer(1, 5)):
            lines += [' \n', f' = = {sections.pop(self.integer(0, len(sections)))} = = \n', ' \n']
            paragraphs(self.integer(1, 4))
            if self.u() < 0.3:
                sub = _SUBSECTIONS[self.integer(0, len(_SUBSECTIONS))]
                lines += [' \n', f' = = = {sub} = = = \n', ' \n']
                paragraphs(self.integer(1, 3))
        return ''.join(lines), count

    def text(self, words: int) -> str:
        parts, count = [], 0
        while count < words:
            text, n = self.article()
            parts.append(text)
            count += n
        return ''.join(parts)


def _bytes_to_unicode() -> List[str]:
    """GPT-2's 256 base symbols in its id order: the printable bytes as themselves, the others shifted past 255."""
    bs = list(range(ord('!'), ord('~') + 1)) + list(range(ord('¡'), ord('¬') + 1)) + list(range(ord('®'), 256))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def _gpt2_bpe_files(text: str, vocab_size: int) -> Tuple[Dict[str, int], List[Tuple[str, str]]]:
    """GPT-2 style ``vocab`` and ``merges``: byte-level BPE merges trained on ``text``, then merges of two base
    symbols until ``vocab_size - 1`` ids, then ``<|endoftext|>``."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - 1, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=[], show_progress=False)
    tok.train_from_iterator(text.splitlines(keepends=True), trainer=trainer)
    trained = json.loads(tok.to_str())['model']['merges']
    merges = [tuple(m.split(' ', 1)) if isinstance(m, str) else tuple(m) for m in trained]
    base = _bytes_to_unicode()
    vocab = {s: i for i, s in enumerate(base)}
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    for a in base:  # padding: merges of two base symbols that the text did not need
        for b in base:
            if len(vocab) >= vocab_size - 1:
                break
            if a + b not in vocab:
                merges.append((a, b))
                vocab[a + b] = len(vocab)
    vocab[EOT] = len(vocab)
    return vocab, merges


def write_wikitext103(
        root: str,
        seed: int = 0,
        vocab_size: int = GPT2_VOCAB_SIZE,
        train_words: int = 40000,
        eval_words: int = 13000,
        force: bool = False,
) -> str:
    """Write the WikiText-103 raw files and GPT-2 style BPE files into ``root``.

    ``root`` is laid out as the extracted ``wikitext-103-raw`` folder, with ``vocab.json`` and ``merges.txt``
    beside the text: ``stepsnet data prepare-text ROOT --tokenizer bpe --vocab ROOT/vocab.json --merges
    ROOT/merges.txt --out DIR`` reads it as WikiText-103. With the default sizes the validation and test splits
    come to about 25,000 tokens each, so a full batch of 16 non-overlapping 1,024-token windows fits in each.

    Args:
        root: Output folder (created).
        seed: Random seed (the same seed writes the same bytes).
        vocab_size: Ids of the BPE vocabulary, ``<|endoftext|>`` included, in [257, 65536] (default GPT-2's).
        train_words: Words (not counting punctuation) of ``wiki.train.raw``, at least.
        eval_words: Words of ``wiki.valid.raw`` and of ``wiki.test.raw``, at least.
        force: Overwrite the files of an earlier data set of the same names.

    Returns:
        ``root``.
    """
    if isinstance(vocab_size, bool) or int(vocab_size) != vocab_size or not 257 <= vocab_size <= 65536:
        raise ValueError(f'vocab_size must be an integer in [257, 65536] (256 byte symbols and <|endoftext|>, '
                         f'uint16 token ids), got {vocab_size!r}')
    words = {'train': _check_count('train_words', train_words), 'val': _check_count('eval_words', eval_words),
             'test': eval_words}
    names = {'train': 'wiki.train.raw', 'val': 'wiki.valid.raw', 'test': 'wiki.test.raw'}
    refuse_existing(root, [*names.values(), 'vocab.json', 'merges.txt'], force, 'a WikiText-103-layout corpus')
    prose = _Prose(np.random.default_rng(seed))
    texts = {split: prose.text(words[split]) for split in names}
    vocab, merges = _gpt2_bpe_files(texts['train'], int(vocab_size))
    with staged_output(root) as stage:
        for split, name in names.items():
            with open(os.path.join(stage, name), 'w', encoding='utf-8', newline='\n') as f:
                f.write(texts[split])
        with open(os.path.join(stage, 'vocab.json'), 'w', encoding='utf-8') as f:
            json.dump(vocab, f, ensure_ascii=False)
        with open(os.path.join(stage, 'merges.txt'), 'w', encoding='utf-8', newline='\n') as f:
            f.write('#version: 0.2\n' + ''.join(f'{a} {b}\n' for a, b in merges))
    return root


# ----------------------------------------------------------------------------------------------------- dispatch

def write_wikitext103_tokens(root: str, seed: int = 0, force: bool = False, **kwargs: Any) -> str:
    """The language models' layout: WikiText-103 raw files with GPT-2 style BPE files written to ``root/raw``
    (:func:`write_wikitext103`, which takes ``kwargs``) and prepared into ``root/tokens``, which is returned."""
    from .text import prepare_text
    raw = write_wikitext103(os.path.join(root, 'raw'), seed=seed, force=force, **kwargs)
    tokens = os.path.join(root, 'tokens')
    prepare_text(tokens, [raw], tokenizer='bpe', vocab_file=os.path.join(raw, 'vocab.json'),
                 merges_file=os.path.join(raw, 'merges.txt'), force=force)
    return tokens


def write_layout(task: str, root: str, seed: int = 0, force: bool = False, **kwargs: Any) -> str:
    """Write the data layout a task's full-size recipes read (the writer its row of
    :data:`stepsnet.utils.tasks.TASKS` names); return the ``data_dir`` to give them.

    Args:
        task: ``cls`` (ImageNet-1K layout, the root returned), ``det`` (COCO 2017, the root), ``seg``
            (ADEChallengeData2016, the root) or ``lm`` (:func:`write_wikitext103_tokens`: the ``tokens`` folder).
        root: Output folder (created).
        seed: Random seed.
        force: Overwrite the files of an earlier data set in ``root``.
        **kwargs: Passed to the task's writer (e.g. ``classes`` for ``cls``).

    Raises:
        ValueError: ``task`` is not one of the four.
    """
    if task not in TASKS:
        raise ValueError(f'unknown task {task!r}; expected one of '
                         + ', '.join(f'{t.name} ({t.title} on {t.dataset})' for t in TASKS.values()))
    return resolve(TASKS[task].write_layout)(root, seed=seed, force=force, **kwargs)


# ----------------------------------------------------------------------------------------------------------------
# Dry runs on generated data

# The training and validation sizes of the paper's data sets (the task table's ``dataset_size``): a dry run on
# generated data sees its few images as this many, so that its steps per epoch, schedule and projection are those of
# the real recipe.
FULL_SIZES = {t.name: (t.dataset, *t.dataset_size) for t in TASKS.values() if t.dataset_size}


def dry_run_data_dir(task: str, cfg: Any) -> str:
    """``cfg.data_dir``; with ``cfg.synthetic_data``, a generated layout of the task's data set (removed at exit)."""
    if not getattr(cfg, 'synthetic_data', False):
        return cfg.data_dir
    root = tempfile.mkdtemp(prefix=f'stepsnet-{task}-data-')
    atexit.register(shutil.rmtree, root, True)
    return write_layout(task, root, seed=getattr(cfg, 'seed', 0))


def dry_run_sets(task: str, cfg: Any, train_set: Any, val_set: Any, eval_batch: int) -> Tuple[Any, Any, int]:
    """``(train_set, val_set, validation size)`` as a run of ``cfg`` uses them.

    A dry run evaluates the first ``eval_batch`` validation items only; on generated data the training set is seen
    at the real data set's size and the validation size returned (for the projection) is the real one too.
    """
    if not getattr(cfg, 'dry_run', 0):
        return train_set, val_set, len(val_set)
    val_size = len(val_set)
    if getattr(cfg, 'synthetic_data', False):
        _, train_size, val_size = FULL_SIZES[task]
        train_set = Resized(train_set, train_size)
    return train_set, Resized(val_set, min(len(val_set), eval_batch)), val_size
