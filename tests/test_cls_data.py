"""Image datasets: the embedded digits default, local CIFAR batches, ImageFolder trees and their errors."""
import os
import pickle
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from stepsnet.data.images import (
    CIFARDataset,
    DigitsDataset,
    ImageFolderDataset,
    build_dataset,
    collate_skip_none,
)


def make_image_folder(root, classes=('cat', 'dog', 'owl'), per_class=4, size=24, splits=('train', 'val')):
    """A tiny ImageNet-layout tree: <root>/<split>/<class>/<i>.png, one flat colour per class plus noise."""
    rng = np.random.default_rng(0)
    for split in splits:
        for c, name in enumerate(classes):
            d = os.path.join(root, split, name)
            os.makedirs(d, exist_ok=True)
            for i in range(per_class):
                px = np.full((size, size, 3), 60 * c + 30, dtype=np.uint8)
                px = np.clip(px + rng.integers(0, 40, px.shape), 0, 255).astype(np.uint8)
                Image.fromarray(px).save(os.path.join(d, f'{i}.png'))
    return str(root)


def test_digits_split_is_fixed_stratified_and_disjoint():
    train, val = DigitsDataset(train=True, img_size=16), DigitsDataset(train=False, img_size=16)
    assert (len(train), len(val)) == (1437, 360)
    assert train.num_classes == 10 and train.classes == [str(i) for i in range(10)]
    assert sorted(set(val.targets)) == list(range(10))
    assert min(np.bincount(val.targets)) >= 35  # stratified: every class ~36 of 360
    img, target = train[0]
    assert img.size == (16, 16) and img.mode == 'RGB' and 0 <= target < 10
    # same split on every construction (same images, same order)
    again = DigitsDataset(train=False, img_size=16)
    assert again.targets == val.targets
    assert np.array_equal(np.asarray(again.images[5]), np.asarray(val.images[5]))
    # no val image is also a train image
    train_px = {np.asarray(im).tobytes() for im in train.images}
    assert sum(np.asarray(im).tobytes() in train_px for im in val.images) < 5  # a few digits are exact duplicates


def test_cifar_reads_local_python_batches(tmp_path):
    folder = tmp_path / 'cifar-10-batches-py'
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, n in [(f'data_batch_{i}', 3) for i in range(1, 6)] + [('test_batch', 4)]:
        with open(folder / name, 'wb') as f:
            data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
            pickle.dump({'data': data, 'labels': [i % 10 for i in range(n)]}, f)
    with open(folder / 'batches.meta', 'wb') as f:
        pickle.dump({'label_names': [f'c{i}' for i in range(10)]}, f)
    train = build_dataset('cifar10', str(tmp_path), 'train')
    val = CIFARDataset(str(folder), train=False)
    assert (len(train), len(val)) == (15, 4)
    assert train.classes[3] == 'c3' and train.num_classes == 10
    img, t = val[1]
    assert img.size == (32, 32) and t == 1
    with open(folder / 'data_batch_1', 'rb') as f:
        first = pickle.load(f)['data'][0]
    assert np.array_equal(np.asarray(train[0][0]).transpose(2, 0, 1).reshape(-1), first)


def test_cifar_missing_gives_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match='CIFAR-100 python batches'):
        build_dataset('cifar100', str(tmp_path), 'train')


def test_image_folder_classes_and_samples(tmp_path):
    root = make_image_folder(tmp_path)
    ds = build_dataset('imagefolder', root, 'val')
    assert ds.classes == ['cat', 'dog', 'owl'] and len(ds) == 12
    img, t = ds[5]
    assert img.size == (24, 24) and t == 1


def test_missing_dataset_paths_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match='nope'):
        build_dataset('imagefolder', str(tmp_path / 'nope'), 'val')
    root = make_image_folder(tmp_path / 'data', splits=('train',))
    with pytest.raises(FileNotFoundError, match=r"val.*does not exist.*found sub-folders \['train'\]"):
        build_dataset('imagefolder', root, 'val')
    with pytest.raises(ValueError, match='needs a data directory'):
        build_dataset('imagefolder', None, 'val')
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'"):
        build_dataset('imagenet', root, 'val')


def test_corrupt_image_raises_naming_the_file_or_is_skipped(tmp_path):
    root = make_image_folder(tmp_path)
    bad = os.path.join(root, 'val', 'dog', '2.png')
    with open(bad, 'wb') as f:
        f.write(b'\x89PNG\r\n\x1a\n this is not an image')
    ds = ImageFolderDataset(os.path.join(root, 'val'))
    index = [p for p, _ in ds.samples].index(bad)
    with pytest.raises(ValueError, match=r'cannot decode image file .*dog/2\.png'):
        ds[index]
    skipping = ImageFolderDataset(os.path.join(root, 'val'), skip_corrupt=True)
    with pytest.warns(UserWarning, match=r'skipping unreadable image file .*dog/2\.png'):
        assert skipping[index] is None
    # the collate function drops the skipped sample from its batch
    import torchvision.transforms as T
    skipping.transform = T.ToTensor()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        batch = collate_skip_none([skipping[i] for i in range(len(skipping))])
    assert batch[0].shape == (11, 3, 24, 24) and torch.equal(batch[1], torch.tensor([0] * 4 + [1] * 3 + [2] * 4))
    assert collate_skip_none([None, None]) is None
