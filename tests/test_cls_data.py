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
    check_class_names,
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


def make_cifar10(folder):
    """The CIFAR-10 python batches in miniature: 3 images per training batch, 4 test images, names c0..c9."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, n in [(f'data_batch_{i}', 3) for i in range(1, 6)] + [('test_batch', 4)]:
        with open(folder / name, 'wb') as f:
            data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
            pickle.dump({'data': data, 'labels': [i % 10 for i in range(n)]}, f)
    with open(folder / 'batches.meta', 'wb') as f:
        pickle.dump({'label_names': [f'c{i}' for i in range(10)]}, f)
    return folder


def test_cifar_reads_local_python_batches(tmp_path):
    folder = make_cifar10(tmp_path / 'cifar-10-batches-py')
    train = build_dataset('cifar10', str(tmp_path), 'train')
    val = CIFARDataset(str(folder), train=False)
    assert (len(train), len(val)) == (15, 4)
    assert train.classes[3] == 'c3' and train.num_classes == 10
    assert train.class_names == [f'c{i}' for i in range(10)]
    img, t = val[1]
    assert img.size == (32, 32) and t == 1
    with open(folder / 'data_batch_1', 'rb') as f:
        first = pickle.load(f)['data'][0]
    assert np.array_equal(np.asarray(train[0][0]).transpose(2, 0, 1).reshape(-1), first)
    # loader workers started by spawn receive the dataset pickled
    copy = pickle.loads(pickle.dumps(val))
    assert copy.targets == val.targets and np.array_equal(np.asarray(copy[3][0]), np.asarray(val[3][0]))


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


def test_cifar100_fine_labels_from_a_renamed_folder(tmp_path):
    folder = tmp_path / 'my-cifar'  # not the archive's folder name: the folder itself is given
    folder.mkdir()
    for name, n in (('train', 6), ('test', 2)):
        with open(folder / name, 'wb') as f:
            pickle.dump({'data': np.zeros((n, 3072), np.uint8), 'fine_labels': [99 - i for i in range(n)],
                         'coarse_labels': [0] * n}, f)
    with open(folder / 'meta', 'wb') as f:
        pickle.dump({'fine_label_names': [f'f{i}' for i in range(100)], 'coarse_label_names': ['x'] * 20}, f)
    ds = build_dataset('cifar100', str(folder), 'val')
    assert len(ds) == 2 and ds.num_classes == 100 and ds.targets == [99, 98] and ds.class_names[99] == 'f99'


def test_cifar_missing_or_corrupt_files_are_named(tmp_path):
    folder = make_cifar10(tmp_path / 'cifar-10-batches-py')
    os.remove(folder / 'test_batch')
    assert len(build_dataset('cifar10', str(tmp_path), 'train')) == 15  # the train split does not need it
    with pytest.raises(FileNotFoundError, match=r'cifar-10-batches-py/test_batch \(needed by the test split\)'):
        build_dataset('cifar10', str(tmp_path), 'val')
    os.remove(folder / 'batches.meta')
    with pytest.raises(FileNotFoundError, match=r'batches\.meta .*is missing'):
        build_dataset('cifar10', str(tmp_path), 'train')
    make_cifar10(tmp_path / 'again')
    (tmp_path / 'again' / 'data_batch_3').write_bytes(b'not a pickle')
    with pytest.raises(ValueError, match=r"corrupt CIFAR-10 train data in .*again: one of \['data_batch_1'"):
        CIFARDataset(str(tmp_path / 'again'))


def test_empty_class_folder_is_refused_naming_it(tmp_path):
    root = make_image_folder(tmp_path, splits=('val',))
    os.makedirs(os.path.join(root, 'val', 'yak'))
    with open(os.path.join(root, 'val', 'yak', 'notes.txt'), 'w') as f:
        f.write('no images here')  # not an image: the folder is still empty of images
    with pytest.raises(ValueError, match=r"'.*val/yak' holds no image files .*3 of its 4 class folders hold images"):
        build_dataset('imagefolder', root, 'val')
    bare = tmp_path / 'bare'
    for c in ('a', 'b'):
        (bare / 'val' / c).mkdir(parents=True)
    with pytest.raises(ValueError, match=r"class folder '.*bare/val/a' holds no image files .*none of its 2"):
        build_dataset('imagefolder', str(bare), 'val')
    (bare / 'empty').mkdir()
    with pytest.raises(ValueError, match='has no class sub-folders'):
        build_dataset('imagefolder', str(bare), 'empty')


def test_hidden_entries_are_neither_classes_nor_images(tmp_path):
    root = make_image_folder(tmp_path, splits=('val',))
    os.makedirs(os.path.join(root, 'val', '.ipynb_checkpoints'))
    with open(os.path.join(root, 'val', 'dog', '._0.png'), 'wb') as f:
        f.write(b'\x00\x05\x16\x07 resource fork')  # what macOS leaves beside a copied image
    ds = build_dataset('imagefolder', root, 'val')
    assert ds.class_names == ['cat', 'dog', 'owl'] and len(ds) == 12
    assert not any(os.path.basename(p).startswith('.') for p, _ in ds.samples)


def test_every_dataset_names_its_classes_in_label_order(tmp_path):
    root = make_image_folder(tmp_path, classes=('zebra', 'ant', 'moth'), splits=('val',))
    folder = build_dataset('imagefolder', root, 'val')
    assert folder.class_names == ['ant', 'moth', 'zebra'] and folder.num_classes == 3
    assert [folder.class_names[t] for t in folder.targets[::4]] == ['ant', 'moth', 'zebra']
    digits = build_dataset('digits', split='val', img_size=8)
    assert digits.class_names == [str(i) for i in range(10)] and digits.num_classes == 10


def test_check_class_names_names_both_sources_and_the_difference(tmp_path):
    root = make_image_folder(tmp_path, classes=('cat', 'dog', 'owl'), splits=('train',))
    make_image_folder(tmp_path, classes=('cat', 'dog', 'bird'), splits=('val',))  # owl renamed to bird
    train, val = build_dataset('imagefolder', root, 'train'), build_dataset('imagefolder', root, 'val')
    check_class_names(train.class_names, list(train.class_names), 'the train split', 'the train split again')
    with pytest.raises(ValueError, match=r"the train split has 3 classes \['cat', 'dog', 'owl'\] but the val split "
                                         r"has 3 \['bird', 'cat', 'dog'\]: the val split lacks \['owl'\]; the val "
                                         r"split has \['bird'\], which the train split does not; renamed\?"):
        check_class_names(train.class_names, val.class_names, 'the train split', 'the val split')
    with pytest.raises(ValueError, match=r"same names in another order \(reordered\), first differences label 0: "
                                         r"'cat' vs 'dog'; label 1: 'dog' vs 'cat'; expected the same label order"):
        check_class_names(['cat', 'dog', 'owl'], ['dog', 'cat', 'owl'], 'checkpoint best.pt', 'the val folder')
    with pytest.raises(ValueError, match=r"checkpoint has 12 classes \['c0', 'c1', 'c2', 'c3', 'c4', \.\.\. "
                                         r"\(7 more\)\] but data has 10 .*data lacks \['c10', 'c11'\]; expected"):
        check_class_names([f'c{i}' for i in range(12)], [f'c{i}' for i in range(10)], 'checkpoint', 'data')
    with pytest.raises(ValueError, match='some names are repeated'):
        check_class_names(['a', 'a', 'b'], ['a', 'b', 'b'])
