"""Every augmentation of every shipped classification recipe holds at its maximum magnitude on real images, and the
default recipe trains a whole epoch."""
import glob
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image, ImageOps

from stepsnet.config.classification import ClassificationConfig
from stepsnet.data.images import SIGNAL_DATASETS, augment_ops, build_dataset
from stepsnet.tasks.classification import data_config, load_config, train_transform

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPES = sorted(glob.glob(os.path.join(REPO, 'configs', 'cls', '*.yaml')))


def _configs():
    recipes = [(os.path.basename(p), load_config(p)) for p in RECIPES]
    # image recipes only: a 1-D signal set has no image transform (tests/test_mnist1d.py)
    return [('default', ClassificationConfig())] + [(n, c) for n, c in recipes if c.dataset not in SIGNAL_DATASETS]


def _real_images(n: int):
    """Real images: the embedded digits (scikit-learn's scans), as RGB PIL images."""
    ds = build_dataset('digits', None, 'train', transform=None, img_size=32)
    return [ds[i][0].convert('RGB') for i in range(n)]


def _at_maximum(ops):
    """Every op at the top of its range, always applied, no random magnitude."""
    for op in ops:
        op.prob, op.magnitude_std = 1.0, 0.0
        op.magnitude = op.magnitude_max or 10.0
    return ops


def test_pillow_refuses_zero_bits_that_timm_asks_for():
    """The cause of the crash this guards against (when the installed Pillow refuses it)."""
    img = _real_images(1)[0]
    try:
        ImageOps.posterize(img, 0)
    except ValueError:
        pass  # Pillow >= 13: the op must not reach it
    cfg = ClassificationConfig()
    posterize = [op for op in augment_ops(train_transform(cfg, data_config(cfg))) if op.name.startswith('Posterize')]
    assert posterize, 'the default recipe draws posterize'
    out = _at_maximum(posterize)[0](img)
    assert out.size == img.size and not np.asarray(out).any()  # 0 bits kept: black, as before Pillow 13


@pytest.mark.parametrize('name,cfg', _configs(), ids=[n for n, _ in _configs()])
def test_every_op_of_every_recipe_at_maximum_magnitude(name, cfg):
    transform = train_transform(cfg, data_config(cfg))
    ops = augment_ops(transform)
    if cfg.auto_augment:
        assert len(ops) >= 14, f'{name}: expected the RandAugment ops, found {len(ops)}'
    images = _real_images(4)
    for op in _at_maximum(ops):
        for img in images:
            out = op(img.resize((cfg.img_size or 224,) * 2))
            assert isinstance(out, Image.Image), (name, op.name)
    # the whole transform, every op forced to its maximum, over real images: what an epoch does to them
    for img in images:
        x = transform(img)
        assert x.shape[0] == 3 and bool(np.isfinite(x.numpy()).all())


def _augment_at_maximum(images):
    for _, cfg in _configs():
        if not cfg.auto_augment:
            continue
        transform = train_transform(cfg, data_config(cfg))
        _at_maximum(augment_ops(transform))
        for img in images:
            transform(img)


def test_an_epoch_of_every_recipe_augmentation_at_maximum():
    """One epoch of the digits training split (1,437 real images) through each auto-augmenting recipe's training
    transform with every op at its maximum magnitude: every image through every op's extreme, posterize's fewest
    bits included, without an error."""
    _augment_at_maximum(_real_images(1437))


def test_default_recipe_trains_an_epoch(tmp_path):
    """`stepsnet train --epochs 1` with no recipe: the default model, data and augmentation, one whole epoch."""
    out = tmp_path / 'run'
    proc = subprocess.run([sys.executable, '-m', 'stepsnet', 'train', '--epochs', '1',
                           '--workers', '0', '--no-progress', '--out-dir', str(out)], cwd=REPO, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert (out / 'results.json').is_file() and 'validation top-1' in proc.stdout


def test_an_error_inside_training_is_internal_with_its_cause(tmp_path, monkeypatch, capsys):
    """An exception raised inside the loop (not the user's data) is reported as an internal error, exit 1."""
    import stepsnet.engine.loop as loop  # the loop's own name of train_step
    from stepsnet.cli import main

    def broken(*args, **kwargs):
        raise ValueError('bits must be in range (1, 8)')
    monkeypatch.setattr(loop, 'train_step', broken)
    code = main(['train', '--epochs', '1', '--warmup-epochs', '0', '--workers', '0', '--no-progress',
                 '--max-train-batches', '2', '--out-dir', str(tmp_path / 'run')])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1
    assert 'internal error (not a problem with your input): ValueError at step 1: bits must be in range (1, 8)' \
        in err[0]
