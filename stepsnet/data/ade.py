"""ADE20K-format semantic segmentation: ``images/{training,validation}/*.jpg`` and
``annotations/{training,validation}/*.png`` (same stem), labels 0..150 with 0 = unlabelled.

As in mmsegmentation (``reduce_zero_label``), label 0 becomes the ignore index 255 and labels 1..150 become
classes 0..149. Training follows its ADE20K pipeline: random rescale of the (2048, 512) scale by a ratio in
[0.5, 2.0] keeping the aspect ratio, a random 512x512 crop (padded with the ignore index where the image is
smaller), a random horizontal flip. Its photometric distortion and the crop's ``cat_max_ratio`` re-draw are not
applied. Validation items are the original image and labels; resizing for inference is the evaluator's job.
"""
import os
import random
from typing import List, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

__all__ = ['IGNORE_INDEX', 'ADE20KSegmentation', 'resize_keep_ratio']

IGNORE_INDEX = 255
_IMAGE_EXTS = ('.jpg', '.jpeg', '.png')


def resize_keep_ratio(height: int, width: int, scale: Tuple[int, int]) -> Tuple[int, int]:
    """mmcv's keep-ratio rescale: the largest size with long side <= max(scale) and short side <= min(scale)."""
    factor = min(max(scale) / max(height, width), min(scale) / min(height, width))
    return int(height * factor + 0.5), int(width * factor + 0.5)


class ADE20KSegmentation(Dataset):
    """One split of an ADE20K-layout data set.

    Items are ``(image, label)``: a float ``(3, H, W)`` tensor in [0, 1] and an int64 ``(H, W)`` tensor of
    classes 0..num_classes-1 or ``IGNORE_INDEX``; ``self.files[i]`` is the image and annotation path pair.
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
    ):
        """Index a split.

        Args:
            root: Data set root holding ``images/`` and ``annotations/``.
            split: ``training`` or ``validation`` (any folder name under both).
            num_classes: Classes after reducing label 0 (ADE20K: 150); a larger label raises.
            train: Random rescale, crop and flip.
            crop_size: Training crop (height, width).
            scale: Base (long, short) scale of the random rescale.
            ratio_range: Range of the random rescale ratio.
            reduce_zero_label: Label 0 is ignored and the others shift down by one (ADE20K). Without it the
                PNG values are the classes and 255 is ignored.

        Raises:
            FileNotFoundError: A folder is missing, or an image has no annotation PNG.
            ValueError: The split holds no images.
        """
        self.root, self.split, self.num_classes, self.train = root, split, num_classes, train
        self.crop_size, self.scale, self.ratio_range = tuple(crop_size), tuple(scale), tuple(ratio_range)
        self.reduce_zero_label = reduce_zero_label
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

    def __len__(self) -> int:
        return len(self.files)

    def load(self, index: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """The original image (float, [0, 1]) and classes of item ``index``, checked."""
        img_path, ann_path = self.files[index]
        with Image.open(img_path) as im:
            image = torch.from_numpy(np.asarray(im.convert('RGB'), dtype=np.uint8).copy()).permute(2, 0, 1)
        with Image.open(ann_path) as im:
            if im.mode not in ('L', 'P', 'I', 'I;16'):
                raise ValueError(f'annotation {ann_path!r} has image mode {im.mode!r}; expected a single-channel '
                                 f'PNG of label ids')
            raw = np.asarray(im, dtype=np.int64)
        if raw.shape != tuple(image.shape[1:]):
            raise ValueError(f'annotation {ann_path!r} is {raw.shape[1]}x{raw.shape[0]} but image {img_path!r} is '
                             f'{image.shape[2]}x{image.shape[1]}; expected the same size')
        label = torch.from_numpy(raw)
        if self.reduce_zero_label:
            top = int(label.max())
            if top > self.num_classes:
                raise ValueError(f'annotation {ann_path!r} has label id {top}; expected 0 (unlabelled) to '
                                 f'{self.num_classes}')
            label = torch.where(label == 0, torch.full_like(label, IGNORE_INDEX), label - 1)
        else:
            bad = label[(label >= self.num_classes) & (label != IGNORE_INDEX)]
            if bad.numel():
                raise ValueError(f'annotation {ann_path!r} has label id {int(bad[0])}; expected 0 to '
                                 f'{self.num_classes - 1} or {IGNORE_INDEX} (ignored)')
        return image.float() / 255.0, label

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, torch.Tensor]:
        image, label = self.load(index)
        if self.train:
            image, label = self._augment(image, label)
        return image, label

    def _augment(self, image: torch.Tensor, label: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        ratio = random.uniform(*self.ratio_range)
        scale = (int(self.scale[0] * ratio), int(self.scale[1] * ratio))
        h, w = resize_keep_ratio(image.shape[1], image.shape[2], scale)
        image = F.interpolate(image[None], size=(h, w), mode='bilinear', align_corners=False)[0]
        label = F.interpolate(label[None, None].float(), size=(h, w), mode='nearest')[0, 0].long()
        ch, cw = self.crop_size
        top, left = random.randint(0, max(h - ch, 0)), random.randint(0, max(w - cw, 0))
        image, label = image[:, top:top + ch, left:left + cw], label[top:top + ch, left:left + cw]
        if random.random() < 0.5:
            image, label = image.flip(-1), label.flip(-1)
        ph, pw = ch - image.shape[1], cw - image.shape[2]
        if ph > 0 or pw > 0:
            image = F.pad(image, (0, pw, 0, ph), value=0.0)
            label = F.pad(label, (0, pw, 0, ph), value=IGNORE_INDEX)
        return image.contiguous(), label.contiguous()

