"""COCO-format instance data (images + instances JSON) through torchvision's ``CocoDetection``; pycocotools AP.

:class:`CocoInstances` checks the annotation file when it is opened (it exists, parses, lists images, each image
file is there, every annotation names a known image and category) so a broken data set fails at once with the
file or id at fault, not hours into training. Category ids (COCO's run 1..90 with gaps) are mapped to contiguous
labels 1..K for the model and back for evaluation. :func:`coco_evaluate` scores detections with pycocotools'
``COCOeval`` (box and mask AP, AP50, AP75, AP small/medium/large).
"""
import contextlib
import copy
import io
import json
import os
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from stepsnet.data.images import ClassNames
from stepsnet.utils.errors import DataError

__all__ = ['CocoInstances', 'coco_split_paths', 'detections_to_coco', 'coco_evaluate', 'collate_detection',
           'aspect_groups']

_STAT_NAMES = ('AP', 'AP50', 'AP75', 'APs', 'APm', 'APl')


def _require_pycocotools():
    try:
        import pycocotools  # noqa: F401
    except ImportError as e:
        raise ImportError('COCO data and evaluation need pycocotools: pip install pycocotools') from e


def coco_split_paths(data_dir: str, split: str) -> Tuple[str, str]:
    """``(image_dir, ann_file)`` of a split in the standard layout: ``<dir>/<split>/``,
    ``<dir>/annotations/instances_<split>.json``."""
    return os.path.join(data_dir, split), os.path.join(data_dir, 'annotations', f'instances_{split}.json')


def _check_annotations(ann_file: str, image_dir: str) -> Dict[str, Any]:
    if not os.path.isfile(ann_file):
        raise FileNotFoundError(f'COCO annotation file {ann_file!r} does not exist; expected an instances JSON '
                                f'(e.g. <data>/annotations/instances_val2017.json)')
    try:
        with open(ann_file, encoding='utf-8') as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f'COCO annotation file {ann_file!r} is not valid JSON ({e})') from e
    if not isinstance(data, dict) or not all(k in data for k in ('images', 'annotations', 'categories')):
        raise ValueError(f'COCO annotation file {ann_file!r} must hold "images", "annotations" and "categories"')
    if not data['images']:
        raise ValueError(f'COCO annotation file {ann_file!r} lists no images; expected at least one')
    if not data['categories']:
        raise ValueError(f'COCO annotation file {ann_file!r} lists no categories; expected at least one')
    if not os.path.isdir(image_dir):
        raise FileNotFoundError(f'image folder {image_dir!r} (for {ann_file!r}) does not exist')
    image_ids = set()
    for img in data['images']:
        path = os.path.join(image_dir, img['file_name'])
        if not os.path.isfile(path):
            raise FileNotFoundError(f'image {path!r} (id {img["id"]}, listed in {ann_file!r}) does not exist')
        image_ids.add(img['id'])
    cat_ids = {c['id'] for c in data['categories']}
    for ann in data['annotations']:
        if ann.get('category_id') not in cat_ids:
            raise ValueError(f'annotation {ann.get("id")} (image {ann.get("image_id")}) in {ann_file!r} has '
                             f'category_id {ann.get("category_id")!r}; expected one of {sorted(cat_ids)}')
        if ann.get('image_id') not in image_ids:
            raise ValueError(f'annotation {ann.get("id")} in {ann_file!r} points to image_id '
                             f'{ann.get("image_id")!r}, which the file does not list')
    return data


class CocoInstances(ClassNames, Dataset):
    """COCO instance segmentation for torchvision detectors.

    Items are ``(image, target)``: a float ``(3, H, W)`` tensor in [0, 1] and a dict with ``boxes`` (XYXY,
    float), ``labels`` (contiguous 1..K), ``masks`` (``(N, H, W)`` uint8) and ``image_id``. Crowd regions and
    boxes without area are left out of training targets (evaluation uses the JSON itself).

    Attributes:
        coco: The pycocotools ``COCO`` object of the annotation file.
        cat_ids: COCO category ids in label order (label ``i + 1`` is ``cat_ids[i]``).
        classes: Category names in label order (also as ``class_names``, with ``num_classes``).
    """
    first_label = 1  # 0 is the background

    def __init__(self, image_dir: str, ann_file: str, train: bool = False, masks: bool = True):
        """Open and check a split.

        Args:
            image_dir: Folder of the images named in the JSON's ``file_name``.
            ann_file: The instances JSON.
            train: Apply training augmentation (random horizontal flip).
            masks: Decode instance masks (needed by Mask R-CNN).

        Raises:
            FileNotFoundError: The JSON, the image folder or an image it lists does not exist.
            ValueError: The JSON is malformed, lists no images or categories, or an annotation names an unknown
                category or image.
        """
        _require_pycocotools()
        from torchvision.datasets import CocoDetection, wrap_dataset_for_transforms_v2
        from torchvision.transforms import v2

        _check_annotations(ann_file, image_dir)
        self.image_dir, self.ann_file, self.train = image_dir, ann_file, train
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
            base = CocoDetection(image_dir, ann_file)
        keys = {'image_id', 'boxes', 'labels', 'iscrowd'} | ({'masks'} if masks else set())
        self.dataset = wrap_dataset_for_transforms_v2(base, target_keys=keys)
        self.coco = base.coco
        self.ids: List[int] = list(base.ids)
        self.cat_ids: List[int] = sorted(self.coco.getCatIds())
        self.classes: List[str] = [self.coco.cats[c]['name'] for c in self.cat_ids]
        self.label_of = {c: i + 1 for i, c in enumerate(self.cat_ids)}
        self.masks = masks
        ops: List[Any] = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]
        if train:
            ops.insert(0, v2.RandomHorizontalFlip(0.5))
        self.transform = v2.Compose(ops)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, Dict[str, Any]]:
        from torchvision import tv_tensors
        try:
            image, target = self.dataset[index]
        except (OSError, Image.DecompressionBombError) as e:  # a file of the user's that cannot be decoded
            raise DataError(f'cannot decode COCO image {index} of {self.image_dir!r}: {e}') from e
        w, h = image.size
        if 'boxes' not in target:  # an image without annotations
            target = {
                'image_id': target['image_id'],
                'boxes': tv_tensors.BoundingBoxes(torch.zeros(0, 4), format='XYXY', canvas_size=(h, w)),
                'labels': torch.zeros(0, dtype=torch.int64), 'iscrowd': [],
            }
            if self.masks:
                target['masks'] = tv_tensors.Mask(torch.zeros(0, h, w, dtype=torch.uint8))
        keep = torch.tensor([not c for c in target['iscrowd']], dtype=torch.bool)
        boxes = target['boxes']
        keep &= (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        out: Dict[str, Any] = {
            'image_id': int(target['image_id']),
            'boxes': tv_tensors.wrap(boxes[keep], like=boxes),
            'labels': torch.tensor([self.label_of[int(c)] for c in target['labels']], dtype=torch.int64)[keep],
        }
        if self.masks:
            out['masks'] = tv_tensors.Mask(target['masks'][keep])
        image, out = self.transform(image, out)
        out['boxes'] = out['boxes'].as_subclass(torch.Tensor).float()
        if self.masks:
            out['masks'] = out['masks'].as_subclass(torch.Tensor).to(torch.uint8)
        return image, out


def aspect_groups(dataset: Any) -> List[int]:
    """Each image's orientation from the annotations (0: landscape or square, 1: portrait), by the data set's
    ``ids`` and ``coco`` (a :class:`CocoInstances`, or a wrapper that forwards them): the groups of
    :func:`stepsnet.data.sampler.epoch_batches`, so that a batch pads its images to one orientation."""
    imgs = dataset.coco.imgs  # an image without a size (COCO files have one) goes with the landscape ones
    return [int(imgs[i].get('height', 0) > imgs[i].get('width', 0)) for i in dataset.ids]


def collate_detection(batch: Sequence[Tuple[torch.Tensor, Dict[str, Any]]]) -> Tuple[List, List]:
    """Lists of images and targets (torchvision detectors take images of different sizes)."""
    images, targets = zip(*batch)
    return list(images), list(targets)


def detections_to_coco(
        outputs: Iterable[Dict[str, torch.Tensor]],
        image_ids: Iterable[int],
        cat_ids: Sequence[int],
        mask_threshold: float = 0.5,
) -> Tuple[List[Dict[str, Any]], List[Dict[str, Any]]]:
    """Detector outputs (original-image coordinates) -> COCO result lists ``(boxes, masks)``.

    Args:
        outputs: Per image ``boxes`` (XYXY), ``scores``, ``labels`` (1..K) and optionally ``masks``
            (``(N, 1, H, W)`` probabilities).
        image_ids: COCO image id of each output.
        cat_ids: COCO category id of each label (label ``i + 1`` -> ``cat_ids[i]``).
        mask_threshold: Probability above which a pixel belongs to the mask.
    """
    from pycocotools import mask as mask_utils
    boxes_res: List[Dict[str, Any]] = []
    masks_res: List[Dict[str, Any]] = []
    for out, image_id in zip(outputs, image_ids):
        boxes = out['boxes'].detach().cpu().float()
        scores = out['scores'].detach().cpu().tolist()
        labels = out['labels'].detach().cpu().tolist()
        xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1).tolist()
        for box, score, label in zip(xywh, scores, labels):
            boxes_res.append({'image_id': int(image_id), 'category_id': int(cat_ids[label - 1]),
                              'bbox': [round(v, 2) for v in box], 'score': float(score)})
        if 'masks' in out:
            masks = (out['masks'][:, 0] > mask_threshold).cpu().numpy().astype(np.uint8)
            for m, score, label in zip(masks, scores, labels):
                rle = mask_utils.encode(np.asfortranarray(m))
                rle['counts'] = rle['counts'].decode('ascii')
                masks_res.append({'image_id': int(image_id), 'category_id': int(cat_ids[label - 1]),
                                  'segmentation': rle, 'score': float(score)})
    return boxes_res, masks_res


def coco_evaluate(
        coco_gt: Any,
        results: Dict[str, List[Dict[str, Any]]],
        image_ids: Optional[Sequence[int]] = None,
        verbose: bool = False,
) -> Dict[str, float]:
    """COCO AP of result lists with pycocotools.

    Args:
        coco_gt: The ground truth ``COCO`` object.
        results: ``{'bbox': [...], 'segm': [...]}`` (either may be missing).
        image_ids: Evaluate on these images only (default: all of ``coco_gt``).
        verbose: Print pycocotools' summary tables.

    Returns:
        ``bbox_AP``, ``bbox_AP50``, ``bbox_AP75``, ``bbox_APs``/``APm``/``APl`` and the same for ``segm``, as
        fractions in [0, 1]; NaN where no ground truth falls in an area range. With no detections, 0.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    metrics: Dict[str, float] = {}
    # COCOeval rewrites the ground truth's polygons into RLEs in place; score against a copy so the data set
    # that owns ``coco_gt`` keeps decoding its masks afterwards
    gt = COCO()
    gt.dataset = copy.deepcopy(coco_gt.dataset)
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    for iou_type, dets in results.items():
        if not dets:
            metrics.update({f'{iou_type}_{n}': 0.0 for n in _STAT_NAMES})
            continue
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            coco_dt = gt.loadRes(dets)
            ev = COCOeval(gt, coco_dt, iou_type)
            if image_ids is not None:
                ev.params.imgIds = list(image_ids)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        if verbose:
            print(f'{iou_type}:\n{buf.getvalue()}')
        # pycocotools writes -1 where no ground truth falls in an area range: report NaN, not a number
        metrics.update({f'{iou_type}_{n}': float(v) if v >= 0 else float('nan')
                        for n, v in zip(_STAT_NAMES, ev.stats[:6])})
    return metrics
