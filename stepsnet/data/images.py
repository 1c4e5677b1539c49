"""Image classification datasets: ImageFolder trees, CIFAR from a local copy, and the embedded digits default.

Every dataset here yields ``(PIL image, class index)`` pairs before its ``transform``, so timm's
``create_transform`` pipelines (RandAugment, random erasing, resize/crop) apply unchanged, and each exposes
``classes`` (the class names) and ``num_classes``. Nothing is ever downloaded:

* :class:`ImageFolderDataset`: the ImageNet layout, ``root/<split>/<class>/<image>``. A file that cannot be
  decoded raises an error naming it, or, with ``skip_corrupt=True``, is dropped from its batch with a warning
  (use :func:`collate_skip_none` as the loader's ``collate_fn``).
* :class:`CIFARDataset`: CIFAR-10 / CIFAR-100 from the extracted python batches
  (``cifar-10-batches-py`` / ``cifar-100-python``).
* :class:`DigitsDataset`: scikit-learn's 1,797 8x8 handwritten digits (shipped inside the package, no
  download), upsampled to RGB images: a small but real 10-class problem that trains in minutes on a CPU.

:func:`build_dataset` picks one by name.
"""
from __future__ import annotations

import os
import pickle
import warnings
from typing import Any, Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torch.utils.data._utils.collate import default_collate

__all__ = [
    'DATASETS', 'ImageFolderDataset', 'CIFARDataset', 'DigitsDataset', 'build_dataset', 'collate_skip_none',
]

DATASETS = ('digits', 'imagefolder', 'cifar10', 'cifar100')
IMG_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif', '.tiff', '.webp', '.JPEG')


class ImageFolderDataset(Dataset):
    """``root/<class>/<image>``: one sub-folder per class, classes sorted by name (as torchvision's ImageFolder).

    Args:
        root: Folder holding one sub-folder per class.
        transform: Applied to the RGB PIL image.
        skip_corrupt: When False (default) an undecodable file raises ``ValueError`` naming it. When True
            the sample is returned as None with a warning, and :func:`collate_skip_none` drops it.
    """

    def __init__(self, root: str, transform: Optional[Callable] = None, skip_corrupt: bool = False):
        if not os.path.isdir(root):
            raise FileNotFoundError(f'image folder {root!r} does not exist; expected a folder with one '
                                    'sub-folder of images per class')
        self.root = root
        self.transform = transform
        self.skip_corrupt = skip_corrupt
        self.classes = sorted(e.name for e in os.scandir(root) if e.is_dir())
        if not self.classes:
            raise ValueError(f'image folder {root!r} has no class sub-folders; expected <root>/<class>/<image>')
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        self.samples: List[Tuple[str, int]] = []
        for c in self.classes:
            for dirpath, _, files in sorted(os.walk(os.path.join(root, c), followlinks=True)):
                for f in sorted(files):
                    if f.lower().endswith(tuple(e.lower() for e in IMG_EXTENSIONS)):
                        self.samples.append((os.path.join(dirpath, f), self.class_to_idx[c]))
        if not self.samples:
            raise ValueError(f'image folder {root!r} has class folders {self.classes[:5]} but no image files '
                             f'(expected extensions {IMG_EXTENSIONS})')
        self.targets = [t for _, t in self.samples]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Optional[Tuple[Any, int]]:
        path, target = self.samples[index]
        try:
            with open(path, 'rb') as f:
                img = Image.open(f)
                img = img.convert('RGB')
        except (OSError, ValueError, Image.DecompressionBombError) as e:
            if self.skip_corrupt:
                warnings.warn(f'skipping unreadable image file {path}: {e}', stacklevel=2)
                return None
            raise ValueError(f'cannot decode image file {path}: {e} (pass skip_corrupt / --skip-corrupt to skip '
                             'unreadable files with a warning)') from e
        if self.transform is not None:
            img = self.transform(img)
        return img, target


def collate_skip_none(batch: Sequence[Optional[Tuple[Any, int]]]):
    """``default_collate`` over the samples that are not None (the unreadable files skipped by a dataset).

    Returns None when the whole batch was skipped; training and evaluation loops ignore such batches.
    """
    batch = [b for b in batch if b is not None]
    if not batch:
        return None
    return default_collate(batch)


def _find_cifar_dir(root: str, variant: int) -> str:
    sub = 'cifar-10-batches-py' if variant == 10 else 'cifar-100-python'
    marker = 'data_batch_1' if variant == 10 else 'train'
    for cand in (root, os.path.join(root, sub)):
        if os.path.isfile(os.path.join(cand, marker)):
            return cand
    raise FileNotFoundError(
        f'no CIFAR-{variant} python batches under {root!r}; expected {marker!r} in it or in {sub}/ '
        f'(extract the python version of CIFAR-{variant}; it is never downloaded)')


class CIFARDataset(Dataset):
    """CIFAR-10 / CIFAR-100 read from the extracted python batches of a local copy.

    Args:
        root: The extracted folder (``cifar-10-batches-py`` / ``cifar-100-python``) or its parent.
        train: Training split (50,000 images) or test split (10,000).
        variant: 10 or 100 (CIFAR-100 uses the 100 fine labels).
        transform: Applied to the 32x32 RGB PIL image.
    """

    def __init__(self, root: str, train: bool = True, variant: int = 10, transform: Optional[Callable] = None):
        if variant not in (10, 100):
            raise ValueError(f'CIFAR variant must be 10 or 100, got {variant}')
        folder = _find_cifar_dir(root, variant)
        if variant == 10:
            files = [f'data_batch_{i}' for i in range(1, 6)] if train else ['test_batch']
            meta, names_key, label_key = 'batches.meta', 'label_names', 'labels'
        else:
            files = ['train'] if train else ['test']
            meta, names_key, label_key = 'meta', 'fine_label_names', 'fine_labels'
        data, labels = [], []
        for name in files:
            path = os.path.join(folder, name)
            if not os.path.isfile(path):
                raise FileNotFoundError(f'CIFAR-{variant} batch file {path} is missing')
            try:
                with open(path, 'rb') as f:
                    entry = pickle.load(f, encoding='latin1')
                data.append(np.asarray(entry['data'], dtype=np.uint8).reshape(-1, 3, 32, 32))
                labels.extend(int(t) for t in entry[label_key])
            except (pickle.UnpicklingError, EOFError, KeyError, ValueError) as e:
                raise ValueError(f'corrupt CIFAR-{variant} batch file {path}: {e}') from e
        self.data = np.concatenate(data).transpose(0, 2, 3, 1)  # NHWC for PIL
        self.targets = labels
        meta_path = os.path.join(folder, meta)
        if os.path.isfile(meta_path):
            with open(meta_path, 'rb') as f:
                self.classes = list(pickle.load(f, encoding='latin1')[names_key])
        else:
            self.classes = [str(i) for i in range(variant)]
        self.transform = transform

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> Tuple[Any, int]:
        img = Image.fromarray(self.data[index])
        if self.transform is not None:
            img = self.transform(img)
        return img, self.targets[index]


class DigitsDataset(Dataset):
    """scikit-learn's handwritten digits (1,797 8x8 grey images, 10 classes) as upsampled RGB images.

    The split is a fixed, stratified one (``val_fraction`` of each class held out, chosen by ``split_seed``),
    so every run and every process sees the same train / validation images.

    Args:
        train: Training part or held-out validation part.
        img_size: Side of the square RGB image the 8x8 digit is resized to (bilinear).
        transform: Applied to the PIL image.
        val_fraction: Fraction of images held out for validation.
        split_seed: Seed of the stratified split.
    """

    def __init__(
            self,
            train: bool = True,
            img_size: int = 32,
            transform: Optional[Callable] = None,
            val_fraction: float = 0.2,
            split_seed: int = 0,
    ):
        try:
            from sklearn.datasets import load_digits
            from sklearn.model_selection import train_test_split
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError('the embedded digits dataset needs scikit-learn: pip install scikit-learn') from e
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f'val_fraction must be in (0, 1), got {val_fraction}')
        digits = load_digits()
        idx = np.arange(len(digits.target))
        train_idx, val_idx = train_test_split(
            idx, test_size=val_fraction, stratify=digits.target, random_state=split_seed)
        keep = np.sort(train_idx if train else val_idx)
        pixels = (digits.images[keep] * (255.0 / 16.0)).round().astype(np.uint8)
        self.images = [
            Image.fromarray(p, mode='L').resize((img_size, img_size), Image.BILINEAR).convert('RGB') for p in pixels]
        self.targets = [int(t) for t in digits.target[keep]]
        self.classes = [str(i) for i in range(10)]
        self.transform = transform

    @property
    def num_classes(self) -> int:
        return 10

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> Tuple[Any, int]:
        img = self.images[index]
        if self.transform is not None:
            img = self.transform(img)
        return img, self.targets[index]


def build_dataset(
        name: str,
        root: Optional[str] = None,
        split: str = 'train',
        transform: Optional[Callable] = None,
        img_size: int = 32,
        skip_corrupt: bool = False,
) -> Dataset:
    """Build a dataset by name.

    Args:
        name: ``digits`` (embedded, no data needed), ``imagefolder`` (``root/<split>/<class>/<image>``),
            ``cifar10`` or ``cifar100`` (``root`` holds the extracted python batches).
        root: Dataset location (not used by ``digits``).
        split: ``train`` or ``val`` (for ``imagefolder``, any sub-folder name of ``root``).
        transform: Applied to each PIL image.
        img_size: Side of the digits images (only ``digits``; other datasets are resized by ``transform``).
        skip_corrupt: ImageFolder only: skip undecodable files with a warning instead of raising.

    Returns:
        A dataset with ``classes``, ``num_classes`` and ``targets``.
    """
    name = name.lower()
    if name not in DATASETS:
        raise ValueError(f'unknown dataset {name!r}; expected one of {DATASETS}')
    if name == 'digits':
        if split not in ('train', 'val'):
            raise ValueError(f'digits has splits train and val, got {split!r}')
        return DigitsDataset(train=split == 'train', img_size=img_size, transform=transform)
    if not root:
        raise ValueError(f'dataset {name!r} needs a data directory (--data-dir)')
    if not os.path.isdir(root):
        raise FileNotFoundError(f'dataset directory {root!r} does not exist')
    if name == 'imagefolder':
        folder = os.path.join(root, split)
        if not os.path.isdir(folder):
            found = sorted(e.name for e in os.scandir(root) if e.is_dir())
            raise FileNotFoundError(
                f'split folder {folder!r} does not exist; expected {root!r} to hold {split}/ with one folder per '
                f'class (ImageNet layout), found sub-folders {found}')
        return ImageFolderDataset(folder, transform=transform, skip_corrupt=skip_corrupt)
    if split not in ('train', 'val', 'test'):
        raise ValueError(f'CIFAR has splits train and val (= test), got {split!r}')
    return CIFARDataset(root, train=split == 'train', variant=10 if name == 'cifar10' else 100, transform=transform)


def dataset_mean_std(name: str) -> Optional[Tuple[Tuple[float, ...], Tuple[float, ...]]]:
    """Normalisation constants of a dataset when they differ from the model's (None: use the model's)."""
    if name == 'digits':
        return (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
    return None


def seed_worker(worker_id: int) -> None:  # pragma: no cover - runs inside loader workers
    """Seed numpy and ``random`` in a loader worker from the torch seed the loader gave it."""
    import random
    seed = torch.initial_seed() % 2 ** 32
    np.random.seed(seed)
    random.seed(seed)
