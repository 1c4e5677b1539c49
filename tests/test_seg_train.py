"""Segmentation training loop: a tiny run, checkpoint and resume, the train-seg / eval-seg commands, recipes."""
import csv
import os

import pytest

from stepsnet.cli import main
from stepsnet.data.layouts import write_ade20k
from stepsnet.data.sampler import epoch_batches
from stepsnet.models.factory import segmenter_from_checkpoint
from stepsnet.tasks.segmentation import SegmentationConfig, load_config, train_segmentation

TINY = dict(num_classes=4, backbone='test_steps_resnet', channels=16, aux_channels=8, crop_size=[64, 80],
            scale=[96, 64], batch_size=2, workers=0, lr=1e-3, warmup_iters=1, log_interval=1, eval_interval=0,
            checkpoint_interval=2, eval_mode='whole', test_scale=None, device='cpu', threads=1, progress=False)


@pytest.fixture(scope='module')
def ade(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('ade'))
    write_ade20k(root, train_images=3, val_images=1, size=(80, 64), seed=6, shape_classes=True)
    return root


def test_epoch_batches_resume_the_same_batches():
    full = [b for e in range(3) for b in epoch_batches(7, 2, e, seed=3)]
    assert all(len(b) == 2 for b in full) and full[:3] != full[3:6]  # a new permutation every epoch
    assert epoch_batches(7, 2, 1, seed=3, start=1) == full[4:6]
    ranks = [epoch_batches(8, 2, 0, seed=0, world_size=2, rank=r) for r in (0, 1)]
    assert sorted(i for r in ranks for b in r for i in b) == list(range(8))  # ranks split an epoch, no overlap
    assert [len(b) for b in epoch_batches(5, 2, 0, drop_last=False)] == [2, 2, 2]  # topped up to full batches
    assert epoch_batches(3, 1, 0, shuffle=False, repeats=2) == [[0], [0], [1]]


def test_train_resume_and_evaluate(ade, tmp_path, capsys):
    out = str(tmp_path / 'run')
    first = train_segmentation(SegmentationConfig(data_dir=ade, out_dir=out, max_iters=2, **TINY))
    assert first['iters'] == 2 and os.path.isfile(first['checkpoint'])
    assert 0.0 <= first['metrics']['mIoU'] <= 1.0
    resumed = train_segmentation(SegmentationConfig(data_dir=ade, out_dir=out, max_iters=4, resume='auto', **TINY))
    assert resumed['iters'] == 4
    with open(os.path.join(out, 'log.csv')) as f:
        assert [r['step'] for r in csv.DictReader(f) if r.get('train_loss')] == ['1', '2', '3', '4']
    model, info = segmenter_from_checkpoint(resumed['checkpoint'])
    assert info['config']['max_iters'] == 4 and not model.training

    assert main(['eval-seg', '--checkpoint', resumed['checkpoint'], '--mode', 'slide', '--crop-size', '48,48',
                 '--stride', '32,32', '--device', 'cpu', '--no-progress']) == 0
    assert 'mIoU' in capsys.readouterr().out


def test_train_seg_command_and_bad_labels(ade, tmp_path, capsys):
    out = str(tmp_path / 'cli')
    args = ['train-seg', '--data-dir', ade, '--out-dir', out, '--num-classes', '2', '--backbone', 'test_steps_vit',
            '--channels', '16', '--aux-channels', '8', '--crop-size', '64,64', '--scale', '96', '64',
            '--max-iters', '1', '--batch-size', '2', '--workers', '0', '--device', 'cpu', '--no-progress']
    assert main(args) == 2  # synthetic labels run to 4: two classes are too few
    assert 'expected 0 (unlabelled) to 2' in capsys.readouterr().err
    args[args.index('--num-classes') + 1] = '4'
    assert main(args + ['--test-scale', 'none']) == 0
    printed = capsys.readouterr().out
    assert 'upernet test_steps_vit: 4 classes' in printed and '; 1 step (1 epoch) into' in printed


def test_paper_recipes_load():
    root = os.path.join(os.path.dirname(__file__), '..', 'configs', 'seg')
    names = sorted(n for n in os.listdir(root) if n.endswith('.yaml'))
    assert 'synthetic.yaml' in names and len(names) >= 2
    for name in names:
        cfg = load_config(os.path.join(root, name))
        if name.startswith('upernet_160k'):
            assert cfg.max_iters == 160000 and cfg.crop_size == [512, 512] and cfg.num_classes == 150
            assert cfg.batch_size * 8 == 16 and cfg.aux_weight == 0.4


def test_resumed_run_sees_the_same_batches(ade, tmp_path, monkeypatch):
    """Straight, or interrupted at an epoch boundary and resumed: the same losses (3 images, batch 2: 1 step per
    epoch)."""
    from stepsnet.tasks import segmentation
    tiny = dict(TINY, checkpoint_interval=1)
    train_segmentation(SegmentationConfig(data_dir=ade, out_dir=str(tmp_path / 'a'), max_iters=4, **tiny))
    real = segmentation._train_batches

    def stop_after_two(*args):
        it = real(*args)
        yield next(it)
        yield next(it)
        raise KeyboardInterrupt
    monkeypatch.setattr(segmentation, '_train_batches', stop_after_two)
    with pytest.raises(KeyboardInterrupt):
        train_segmentation(SegmentationConfig(data_dir=ade, out_dir=str(tmp_path / 'b'), max_iters=4, **tiny))
    monkeypatch.setattr(segmentation, '_train_batches', real)
    train_segmentation(SegmentationConfig(data_dir=ade, out_dir=str(tmp_path / 'b'), max_iters=4, resume='auto',
                                          **tiny))

    def losses(out):
        with open(os.path.join(out, 'log.csv')) as f:
            return [float(r['train_loss']) for r in csv.DictReader(f) if r.get('train_loss')]
    assert losses(str(tmp_path / 'a')) == pytest.approx(losses(str(tmp_path / 'b')), rel=1e-5)


def test_non_finite_loss_stops_segmentation(ade, tmp_path, monkeypatch):
    import torch.nn.functional as F

    from stepsnet.tasks import segmentation
    real = F.cross_entropy
    monkeypatch.setattr(segmentation.F, 'cross_entropy', lambda *a, **k: real(*a, **k) * float('nan'))
    with pytest.raises(FloatingPointError, match='training loss is nan at step 1'):
        train_segmentation(SegmentationConfig(data_dir=ade, out_dir=str(tmp_path / 'nan'), max_iters=2, **TINY))
    assert not os.path.exists(tmp_path / 'nan' / 'last.pth')
