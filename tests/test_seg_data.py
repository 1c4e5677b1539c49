"""ADE20K-format data and segmentation metrics: loader, augmentation, metrics, inference modes, bad input."""
import math
import os
import re

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image
from snapshots import snapshot
from torchvision import tv_tensors

from stepsnet.cli import main
from stepsnet.data.ade import IGNORE_INDEX, ADE20KSegmentation, photometric_distortion
from stepsnet.data.layouts import write_ade20k
from stepsnet.data.synthetic import ADE_SYNTH_CLASSES
from stepsnet.tasks.segmentation import confusion_matrix, predict_logits, segmentation_metrics


@pytest.fixture()
def ade_root(tmp_path):
    root = str(tmp_path / 'ade')
    write_ade20k(root, train_images=2, val_images=2, size=(80, 64), seed=4, shape_classes=True)
    return root


def test_synthetic_ade_loads(ade_root):
    ds = ADE20KSegmentation(ade_root, 'validation', num_classes=4)
    image, label = ds[0]
    assert image.shape[1:] == label.shape and label.dtype == torch.int64
    values = set(label.unique().tolist())
    assert values <= {0, 1, 2, 3, IGNORE_INDEX} and 0 in values and IGNORE_INDEX in values  # 0 = background
    with Image.open(ds.files[0][1]) as im:
        raw = np.asarray(im)
    assert ((raw == 0) == (label.numpy() == IGNORE_INDEX)).all()  # label 0 is ignored
    assert (label.numpy()[raw > 0] == raw[raw > 0] - 1).all()  # the others shift down by one


def test_training_crops(ade_root):
    ds = ADE20KSegmentation(ade_root, 'training', num_classes=4, train=True, crop_size=(96, 112), scale=(80, 64),
                            ratio_range=(0.5, 0.5))
    image, label = ds[0]  # the rescaled image is smaller than the crop: padded with the ignore index
    assert image.shape == (3, 96, 112) and label.shape == (96, 112)
    assert (label[-1] == IGNORE_INDEX).all() and (image[:, -1] == 0).all()
    assert (label[:, -1] == IGNORE_INDEX).all() and (label[:20, :20] != IGNORE_INDEX).any()  # image at top left
    assert type(image) is torch.Tensor and type(label) is torch.Tensor and label.dtype == torch.int64


def test_augmentation_moves_image_and_labels_together(tmp_path):
    """Lossless images whose red channel encodes the label: any crop or flip must keep them in register."""
    root = tmp_path / 'ade'
    for d in ('images/training', 'annotations/training'):
        (root / d).mkdir(parents=True)
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 5, (40, 60)).astype(np.uint8)
    raw[:, :30] = np.arange(30) % 5  # an asymmetric left half: a flip shows
    Image.fromarray(np.stack([raw * 50, raw * 0, raw * 0], -1)).save(root / 'images/training/a.png')
    Image.fromarray(raw).save(root / 'annotations/training/a.png')
    ds = ADE20KSegmentation(str(root), 'training', num_classes=4, train=True, crop_size=(32, 48), scale=(60, 40),
                            ratio_range=(1.0, 1.0), photometric=False)
    first_rows = set()
    for seed in range(8):
        torch.manual_seed(seed)
        image, label = ds[0]
        assert image.shape == (3, 32, 48) and label.shape == (32, 48)
        red = (image[0] * 255).round().long()
        expect = torch.where(label == IGNORE_INDEX, 0, (label + 1) * 50)  # label 0 (= raw 0) is ignored
        assert torch.equal(red, expect)
        first_rows.add(tuple(label[0].tolist()))
    assert len(first_rows) > 2  # different crops and flips were drawn


def test_photometric_distortion_is_on_for_training_only(ade_root):
    assert ADE20KSegmentation(ade_root, 'training', num_classes=4, train=True).photometric is True
    assert ADE20KSegmentation(ade_root, 'validation', num_classes=4).photometric is False
    with pytest.raises(ValueError, match='photometric=True distorts training images only'):
        ADE20KSegmentation(ade_root, 'validation', num_classes=4, photometric=True)
    distort = photometric_distortion()
    image = tv_tensors.Image(torch.randint(0, 256, (3, 24, 24), dtype=torch.uint8))
    mask = tv_tensors.Mask(torch.randint(0, 4, (24, 24)))
    changed = 0
    for seed in range(6):
        torch.manual_seed(seed)
        out_image, out_mask = distort(image, mask)
        assert torch.equal(out_mask, mask) and out_image.dtype == torch.uint8 and out_image.shape == image.shape
        changed += not torch.equal(out_image, image)
    assert changed >= 3  # each of its four steps is applied with probability 0.5
    # the same geometric draws with and without the distortion (it comes last): only the pixel values differ
    common = dict(num_classes=4, train=True, crop_size=(48, 48), scale=(80, 64))
    with_pd = ADE20KSegmentation(ade_root, 'training', **common)
    without = ADE20KSegmentation(ade_root, 'training', photometric=False, **common)
    changed = 0
    for seed in range(4):
        torch.manual_seed(seed)
        image, label = with_pd[0]
        torch.manual_seed(seed)
        plain, same_label = without[0]
        assert torch.equal(label, same_label) and 0 <= image.min() and image.max() <= 1
        changed += not torch.equal(image, plain)
    assert changed >= 2


def test_class_names(ade_root):
    ds = ADE20KSegmentation(ade_root, 'validation', num_classes=4)
    assert ds.class_names == list(ADE_SYNTH_CLASSES)
    with pytest.warns(UserWarning, match=r'classes\.txt\' lists 4 classes but num_classes=150'):
        assert ADE20KSegmentation(ade_root, 'validation').class_names[:2] == ['0', '1']
    os.remove(os.path.join(ade_root, 'classes.txt'))
    assert ADE20KSegmentation(ade_root, 'validation', num_classes=4).class_names == ['0', '1', '2', '3']


def test_metrics_from_confusion():
    label = torch.tensor([[0, 0, 1, 1], [2, 2, IGNORE_INDEX, 1]])
    pred = torch.tensor([[0, 1, 1, 1], [2, 0, 0, 1]])
    conf = confusion_matrix(pred, label, 4)
    assert conf.sum() == 7 and conf[0, 0] == 1 and conf[0, 1] == 1 and conf[2, 0] == 1
    m = segmentation_metrics(conf)
    # class 0: inter 1, union 2 + 2 - 1 = 3; class 1: inter 3, union 3 + 4 - 3 = 4; class 2: 1 / (2 + 1 - 1)
    assert m['IoU'][:3] == pytest.approx([1 / 3, 3 / 4, 1 / 2])
    assert math.isnan(m['IoU'][3])  # absent everywhere: left out of the mean
    assert m['mIoU'] == pytest.approx((1 / 3 + 3 / 4 + 1 / 2) / 3)
    assert m['mAcc'] == pytest.approx((1 / 2 + 1 + 1 / 2) / 3)
    assert m['aAcc'] == pytest.approx(5 / 7)


def test_sliding_window_matches_whole_for_a_pointwise_model():
    torch.manual_seed(0)
    model = nn.Conv2d(3, 5, 1)  # per-pixel: windows cannot change the answer
    image = torch.rand(3, 70, 90)
    whole = predict_logits(model, image, 'whole', test_scale=None).softmax(0)
    slide = predict_logits(model, image, 'slide', crop_size=(32, 32), stride=(20, 24), test_scale=None)
    assert slide.shape == (5, 70, 90)
    assert torch.allclose(whole, slide, atol=1e-5)
    resized = predict_logits(model, image, 'whole', test_scale=(180, 140))
    assert resized.shape == (5, 70, 90)
    with pytest.raises(ValueError, match='unknown inference mode'):
        predict_logits(model, image, 'tiles')


def test_missing_annotation(ade_root):
    os.remove(os.path.join(ade_root, 'annotations', 'validation', 'ADE_val_00000002.png'))
    with pytest.raises(FileNotFoundError, match='ADE_val_00000002.png'):
        ADE20KSegmentation(ade_root, 'validation', num_classes=4)


def test_label_out_of_range(ade_root):
    ds = ADE20KSegmentation(ade_root, 'validation', num_classes=4)
    path = ds.files[1][1]
    with Image.open(path) as im:
        raw = np.asarray(im).copy()
    raw[0, 0] = 151
    Image.fromarray(raw).save(path)
    ds[0]
    with pytest.raises(ValueError, match=r'ADE_val_00000002\.png.*label id 151; expected 0 \(unlabelled\) to 4'):
        ds[1]


def test_empty_image_folder(ade_root):
    folder = os.path.join(ade_root, 'images', 'validation')
    for n in os.listdir(folder):
        os.remove(os.path.join(folder, n))
    with pytest.raises(ValueError, match='holds no images'):
        ADE20KSegmentation(ade_root, 'validation')


def test_missing_split_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match='images/training'):
        ADE20KSegmentation(str(tmp_path), 'training')


def test_size_mismatch(ade_root):
    ds = ADE20KSegmentation(ade_root, 'validation', num_classes=4)
    Image.new('L', (7, 5), 1).save(ds.files[0][1])
    with pytest.raises(ValueError, match='expected the same size'):
        ds[0]


def test_synth_ade_command(tmp_path, capsys):
    out = str(tmp_path / 'a')
    assert main(['data', 'synth-ade', '--out', out, '--num-train', '1', '--num-val', '1', '--size', '40,56']) == 0
    assert 'num_classes 4' in capsys.readouterr().out
    assert os.listdir(os.path.join(out, 'images', 'training')) == ['ADE_train_00000001.jpg']
    assert os.listdir(os.path.join(out, 'annotations', 'validation')) == ['ADE_val_00000001.png']


def test_synthetic_ade_does_not_overwrite_an_existing_data_set(ade_root, tmp_path):
    before = snapshot(ade_root)
    with pytest.raises(FileExistsError, match=r"ade/classes\.txt' already exists \(and 8 more of its files\); "
                                              r"refusing to overwrite it with an ADE20K-layout data set.*force"):
        write_ade20k(ade_root, train_images=2, val_images=2, size=(80, 64), seed=5, shape_classes=True)
    with pytest.raises(ValueError, match=r'size must be two integers \(width, height\), each >= 32, got \(80, 8\)'):
        write_ade20k(ade_root, size=(80, 8), shape_classes=True)
    with pytest.raises(ValueError, match='max_shapes must be an integer >= 1, got 0'):
        write_ade20k(ade_root, max_shapes=0, shape_classes=True)
    assert snapshot(ade_root) == before and os.listdir(tmp_path) == ['ade']
    # force: one image per split now; the second one of the old set stays, with a warning
    with pytest.warns(UserWarning) as caught:
        write_ade20k(ade_root, train_images=1, val_images=1, size=(80, 64), seed=5, shape_classes=True, force=True)
    found = [re.search(r'images/(\w+) holds 2 files, 1 more than the images written now', str(w.message))
             for w in caught]
    assert [m.group(1) for m in found if m] == ['training', 'validation']
    after = snapshot(ade_root)
    assert set(after) == set(before)
    name = os.path.join('annotations', 'training', 'ADE_train_00000001.png')
    assert after[name] != before[name]
    assert after[name.replace('00000001', '00000002')] == before[name.replace('00000001', '00000002')]
