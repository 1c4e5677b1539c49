"""ADE20K-format semantic segmentation: ``images/{training,validation}/*.jpg`` and
``annotations/{training,validation}/*.png`` (same stem), labels 0..150 with 0 = unlabelled.

As in mmsegmentation (``reduce_zero_label``), label 0 becomes the ignore index 255 and labels 1..150 become
classes 0..149. Training follows its ADE20K pipeline, applied jointly to the image and its label map as torchvision
``tv_tensors`` (``Image`` and ``Mask``, which resizes with nearest neighbours): random rescale of the (2048, 512)
scale by a ratio in [0.5, 2.0] keeping the aspect ratio, a random 512x512 crop, a random horizontal flip, the
photometric distortion, then padding to the crop size (image 0, labels the ignore index) at the bottom and right.

The photometric distortion is mmseg's ``PhotoMetricDistortion`` built from ``v2.ColorJitter``: brightness,
contrast (before or after the colour steps, at random), saturation and hue, each applied with probability 0.5,
with mmseg's ranges (contrast and saturation factors in [0.5, 1.5], hue shifted by up to 18 of OpenCV's 180
degrees = 0.1 of the hue circle). One difference: mmseg adds a brightness offset in [-32, 32]; ``ColorJitter``
multiplies by a factor in [1 - 32/255, 1 + 32/255], the same change at white and a smaller one in dark regions.
The crop's ``cat_max_ratio`` re-draw is not applied. Validation items are the original image and labels;
resizing for inference is the evaluator's job.
"""
import os
import warnings
from typing import List, Optional, Tuple

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from stepsnet.utils.errors import DataError

__all__ = ['IGNORE_INDEX', 'ADE20KSegmentation', 'resize_keep_ratio', 'photometric_distortion']

IGNORE_INDEX = 255
CLASSES_FILE = 'classes.txt'
_IMAGE_EXTS = ('.jpg', '.jpeg', '.png')


def resize_keep_ratio(height: int, width: int, scale: Tuple[int, int]) -> Tuple[int, int]:
    """mmcv's keep-ratio rescale: the largest size with long side <= max(scale) and short side <= min(scale)."""
    factor = min(max(scale) / max(height, width), min(scale) / min(height, width))
    return int(height * factor + 0.5), int(width * factor + 0.5)


def photometric_distortion(
        brightness_delta: int = 32,
        contrast_range: Tuple[float, float] = (0.5, 1.5),
        saturation_range: Tuple[float, float] = (0.5, 1.5),
        hue_delta: int = 18,
) -> v2.Transform:
    """mmseg's ``PhotoMetricDistortion`` as torchvision v2 transforms (masks pass through unchanged).

    Args:
        brightness_delta: Brightness change at white, in 0..255 pixel values (a factor in
            ``[1 - delta/255, 1 + delta/255]``).
        contrast_range: Range of the contrast factor.
        saturation_range: Range of the saturation factor.
        hue_delta: Hue shift in OpenCV's 0..180 hue units.
    """
    def sometimes(**jitter) -> v2.Transform:
        return v2.RandomApply([v2.ColorJitter(**jitter)], p=0.5)

    contrast = sometimes(contrast=contrast_range)
    colour = [sometimes(saturation=saturation_range), sometimes(hue=(-hue_delta / 180, hue_delta / 180))]
    return v2.Compose([
        sometimes(brightness=(1 - brightness_delta / 255, 1 + brightness_delta / 255)),
        v2.RandomChoice([v2.Compose([contrast, *colour]), v2.Compose([*colour, contrast])]),
    ])


class ADE20KSegmentation(Dataset):
    """One split of an ADE20K-layout data set.

    Items are ``(image, label)``: a float ``(3, H, W)`` tensor in [0, 1] and an int64 ``(H, W)`` tensor of
    classes 0..num_classes-1 or ``IGNORE_INDEX``; ``self.files[i]`` is the image and annotation path pair, and
    ``class_names`` the names of the classes (from ``<root>/classes.txt`` when it lists ``num_classes`` names,
    else their numbers, with a warning when it lists another number).
    """

    def __init__(
            self,
            root: str,
            split: str = 'training',
            num_classes: int = 150,
            train: bool = False,
            crop_size: Tuple[int, int] = (512, 512),
            scale: Tuple[int, int] = (2048, 512),
            ratio_range: Tuple[float, float] = (0.5, 2.0),
            reduce_zero_label: bool = True,
            photometric: Optional[bool] = None,
    ):
        """Index a split.

        Args:
            root: Data set root holding ``images/`` and ``annotations/``.
            split: ``training`` or ``validation`` (any folder name under both).
            num_classes: Classes after reducing label 0 (ADE20K: 150); a larger label raises.
            train: Random rescale, crop and flip (and the photometric distortion).
            crop_size: Training crop (height, width).
            scale: Base (long, short) scale of the random rescale.
            ratio_range: Range of the random rescale ratio.
            reduce_zero_label: Label 0 is ignored and the others shift down by one (ADE20K). Without it the
                PNG values are the classes and 255 is ignored.
            photometric: Apply mmseg's photometric distortion (:func:`photometric_distortion`) to training
                images. None (default) means ``train``; it cannot be set for an evaluation split.

        Raises:
            FileNotFoundError: A folder is missing, or an image has no annotation PNG.
            ValueError: The split holds no images, or ``photometric`` is set without ``train``.
        """
        if photometric is None:
            photometric = train
        if photometric and not train:
            raise ValueError('photometric=True distorts training images only; it was given with train=False')
        self.root, self.split, self.num_classes, self.train = root, split, num_classes, train
        self.crop_size, self.scale, self.ratio_range = tuple(crop_size), tuple(scale), tuple(ratio_range)
        self.reduce_zero_label, self.photometric = reduce_zero_label, photometric
        img_dir = os.path.join(root, 'images', split)
        ann_dir = os.path.join(root, 'annotations', split)
        for d in (img_dir, ann_dir):
            if not os.path.isdir(d):
                raise FileNotFoundError(f'folder {d!r} does not exist; expected the ADE20K layout '
                                        f'<root>/images/{split} and <root>/annotations/{split}')
        names = sorted(n for n in os.listdir(img_dir) if n.lower().endswith(_IMAGE_EXTS))
        if not names:
            raise ValueError(f'image folder {img_dir!r} holds no images (.jpg, .jpeg, .png); expected at least one')
        self.files: List[Tuple[str, str]] = []
        for n in names:
            ann = os.path.join(ann_dir, os.path.splitext(n)[0] + '.png')
            if not os.path.isfile(ann):
                raise FileNotFoundError(f'annotation {ann!r} for image {os.path.join(img_dir, n)!r} does not exist')
            self.files.append((os.path.join(img_dir, n), ann))
        self.class_names = self._read_class_names()
        joint: List[v2.Transform] = [v2.RandomHorizontalFlip(0.5)]
        if photometric:
            joint.append(photometric_distortion())
        self.flip_and_distort = v2.Compose(joint)

    def _read_class_names(self) -> List[str]:
        path = os.path.join(self.root, CLASSES_FILE)
        if not os.path.isfile(path):
            return [str(i) for i in range(self.num_classes)]
        with open(path, encoding='utf-8') as f:
            names = [line.strip() for line in f if line.strip()]
        if len(names) != self.num_classes:
            warnings.warn(f'{path!r} lists {len(names)} classes but num_classes={self.num_classes}; the classes are '
                          'named by their numbers', stacklevel=3)
            return [str(i) for i in range(self.num_classes)]
        return names

    def __len__(self) -> int:
        return len(self.files)

    def _read(self, index: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """The original image (uint8) and classes of item ``index``, checked."""
        img_path, ann_path = self.files[index]
        try:
            with Image.open(img_path) as im:
                image = torch.from_numpy(np.asarray(im.convert('RGB'), dtype=np.uint8).copy()).permute(2, 0, 1)
        except (OSError, ValueError, Image.DecompressionBombError) as e:
            raise DataError(f'cannot decode image file {img_path}: {e}') from e
        with Image.open(ann_path) as im:
            if im.mode not in ('L', 'P', 'I', 'I;16'):
                raise DataError(f'annotation {ann_path!r} has image mode {im.mode!r}; expected a single-channel '
                                 f'PNG of label ids')
            raw = np.asarray(im, dtype=np.int64)
        if raw.shape != tuple(image.shape[1:]):
            raise DataError(f'annotation {ann_path!r} is {raw.shape[1]}x{raw.shape[0]} but image {img_path!r} is '
                             f'{image.shape[2]}x{image.shape[1]}; expected the same size')
        label = torch.from_numpy(raw)
        if self.reduce_zero_label:
            top = int(label.max())
            if top > self.num_classes:
                raise DataError(f'annotation {ann_path!r} has label id {top}; expected 0 (unlabelled) to '
                                 f'{self.num_classes}')
            label = torch.where(label == 0, torch.full_like(label, IGNORE_INDEX), label - 1)
        else:
            bad = label[(label >= self.num_classes) & (label != IGNORE_INDEX)]
            if bad.numel():
                raise DataError(f'annotation {ann_path!r} has label id {int(bad[0])}; expected 0 to '
                                 f'{self.num_classes - 1} or {IGNORE_INDEX} (ignored)')
        return image, label

    def load(self, index: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """The original image (float, [0, 1]) and classes of item ``index``, checked."""
        image, label = self._read(index)
        return image.float() / 255.0, label

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, torch.Tensor]:
        if not self.train:
            return self.load(index)
        image, label = self._read(index)
        image, label = self._augment(tv_tensors.Image(image), tv_tensors.Mask(label))
        return image.as_subclass(torch.Tensor).contiguous(), label.as_subclass(torch.Tensor).contiguous()

    def _augment(self, image: tv_tensors.Image, label: tv_tensors.Mask) -> Tuple[torch.Tensor, torch.Tensor]:
        lo, hi = self.ratio_range
        ratio = lo + (hi - lo) * float(torch.rand(()))
        scale = (int(self.scale[0] * ratio), int(self.scale[1] * ratio))
        h, w = resize_keep_ratio(image.shape[-2], image.shape[-1], scale)
        image, label = TF.resize(image, [h, w], antialias=True), TF.resize(label, [h, w])
        ch, cw = self.crop_size
        top, left = int(torch.randint(max(h - ch, 0) + 1, ())), int(torch.randint(max(w - cw, 0) + 1, ()))
        box = (top, left, min(ch, h), min(cw, w))
        image, label = TF.crop(image, *box), TF.crop(label, *box)
        image, label = self.flip_and_distort(image, label)
        pad = [0, 0, cw - image.shape[-1], ch - image.shape[-2]]  # left, top, right, bottom
        if pad[2] or pad[3]:
            image, label = TF.pad(image, pad, fill=0), TF.pad(label, pad, fill=IGNORE_INDEX)
        return TF.to_dtype(image, torch.float32, scale=True), label
