"""Detection training loop: a tiny run, checkpoint and resume, the train-det / eval-det commands, config errors."""
import csv
import json
import os

import pytest
import torch

from stepsnet.cli import main
from stepsnet.data.layouts import write_coco
from stepsnet.engine import RunError
from stepsnet.models.factory import detector_from_checkpoint
from stepsnet.tasks.detection import DetectionConfig, load_config, train_detection
from stepsnet.utils import CheckpointError

pytestmark = pytest.mark.filterwarnings('ignore::DeprecationWarning')  # pycocotools on numpy 2

TINY = dict(backbone='test_steps_resnet', min_size=64, max_size=96, fpn_channels=16, box_head_dim=32,
            mask_head_channels=8, anchor_sizes=[16, 32, 64, 128, 256], rpn_batch_size_per_image=32,
            box_batch_size_per_image=32, batch_size=2, workers=0, lr=1e-3, warmup_iters=2, log_interval=1,
            device='cpu', threads=1, progress=False,
            detector_kwargs=dict(rpn_pre_nms_top_n_test=50, rpn_post_nms_top_n_test=20, box_detections_per_img=10))


@pytest.fixture(scope='module')
def coco(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('coco'))
    write_coco(root, train_images=2, val_images=1, size=(80, 64), seed=5, shape_classes=True)
    return root


def _rows(out_dir):
    with open(os.path.join(out_dir, 'log.csv')) as f:
        return list(csv.DictReader(f))


def test_train_resume_and_evaluate(coco, tmp_path, capsys):
    out = str(tmp_path / 'run')
    first = train_detection(DetectionConfig(data_dir=coco, out_dir=out, epochs=1, **TINY))
    assert first['iters'] == 1 and os.path.isfile(first['checkpoint'])
    assert 0.0 <= first['metrics']['bbox_AP50'] <= 1.0 and 'segm_AP' in first['metrics']
    with pytest.raises(RunError, match='already holds a run'):
        train_detection(DetectionConfig(data_dir=coco, out_dir=out, epochs=2, **TINY))
    resumed = train_detection(DetectionConfig(data_dir=coco, out_dir=out, epochs=2, resume='auto', **TINY))
    assert resumed['iters'] == 2 and resumed['epochs'] == 2
    assert [r['step'] for r in _rows(out) if r.get('train_loss')] == ['1', '2']  # the first epoch was not redone
    model, info = detector_from_checkpoint(resumed['checkpoint'])
    assert info['classes'] == ['rectangle', 'ellipse', 'triangle'] and not model.training
    with open(os.path.join(out, 'results.json')) as f:
        assert json.load(f)['final'] == pytest.approx(resumed['metrics'], nan_ok=True)

    metrics_file = str(tmp_path / 'm.json')
    assert main(['eval-det', '--checkpoint', resumed['checkpoint'], '--split', 'train2017', '--no-progress',
                 '--device', 'cpu', '--out', metrics_file]) == 0
    table = capsys.readouterr().out
    assert '| bbox |' in table and '| segm |' in table
    with open(metrics_file) as f:
        assert 0.0 <= json.load(f)['bbox_AP'] <= 1.0


def test_finished_run_with_other_settings_is_refused(coco, tmp_path):
    out = str(tmp_path / 'fin')
    train_detection(DetectionConfig(data_dir=coco, out_dir=out, epochs=1, **TINY))
    before = {n: open(os.path.join(out, n), 'rb').read() for n in ('last.pth', 'config.json', 'results.json')}
    with pytest.raises(RunError, match=r'other settings \(.*min_size: 64 -> 48'):
        train_detection(DetectionConfig(data_dir=coco, out_dir=out, epochs=1, resume='auto',
                                        **dict(TINY, min_size=48)))
    with pytest.raises(RunError, match=r"backbone: 'test_steps_resnet' -> 'test_resnet'"):
        train_detection(DetectionConfig(data_dir=coco, out_dir=out, epochs=1, resume='auto',
                                        **dict(TINY, backbone='test_resnet')))
    for n, data in before.items():
        assert open(os.path.join(out, n), 'rb').read() == data, n


def test_train_det_command(coco, tmp_path, capsys):
    config = tmp_path / 'c.yaml'
    config.write_text('arch: retinanet\nepochs: 1\n')
    out = str(tmp_path / 'cli')
    args = ['train-det', '--config', str(config), '--data-dir', coco, '--out-dir', out, '--backbone', 'test_resnet',
            '--min-size', '64', '--max-size', '96', '--fpn-channels', '16', '--anchor-sizes', '16', '32', '64', '128',
            '256', '--batch-size', '2', '--workers', '0', '--threads', '1', '--no-progress', '--device', 'cpu',
            '--model-kwargs', 'drop_path_rate=0.1']
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert 'retinanet test_resnet: 3 categories' in printed and '; 1 step (1 epoch) into' in printed
    state = torch.load(os.path.join(out, 'last.pth'), weights_only=True)
    assert state['config']['model_kwargs'] == {'drop_path_rate': 0.1} and state['config']['arch'] == 'retinanet'


def test_corrupt_checkpoint_is_reported(coco, tmp_path):
    out = tmp_path / 'bad'
    out.mkdir()
    (out / 'last.pth').write_bytes(b'not a checkpoint')
    with pytest.raises(CheckpointError, match='last.pth'):
        train_detection(DetectionConfig(data_dir=coco, out_dir=str(out), epochs=1, resume='auto', **TINY))


def test_config_errors(tmp_path, capsys):
    with pytest.raises(ValueError, match=r"unknown config keys \['epoch'\]"):
        load_config(None, epoch=3)
    with pytest.raises(FileNotFoundError, match='nope.yaml'):
        load_config(str(tmp_path / 'nope.yaml'))
    assert load_config(None, optimizer='sgd').opt == 'sgd'  # a name of an earlier release, read as the new one
    assert "config key 'optimizer' is now 'opt'" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"unknown config keys \['bakbone'\] \(did you mean 'backbone'"):
        load_config(None, bakbone='resnet50')
    with pytest.raises(ValueError, match='epochs must be >= 1, got -1'):
        load_config(None, epochs=-1)
    assert main(['train-det', '--data-dir', str(tmp_path / 'none'), '--device', 'cpu']) == 2
    assert 'instances_train2017.json' in capsys.readouterr().err


def test_paper_recipes_load():
    root = os.path.join(os.path.dirname(__file__), '..', 'configs', 'det')
    names = sorted(n for n in os.listdir(root) if n.endswith('.yaml'))
    assert 'synthetic.yaml' in names and len(names) >= 2
    for name in names:
        cfg = load_config(os.path.join(root, name))
        if name.startswith('mask_rcnn_fpn_1x'):
            assert cfg.arch == 'mask_rcnn' and cfg.epochs == 12 and cfg.lr_steps == [8, 11]
            assert cfg.min_size == 800 and cfg.max_size == 1333
            assert cfg.opt == ('momentum' if 'resnet' in cfg.backbone else 'adamw')
            assert cfg.aspect_grouping  # the paper protocol's batches; off by default (a resumed older run)


def test_resumed_run_sees_the_same_batches(coco, tmp_path):
    """Two epochs straight, or one epoch then a resume: the same losses (checkpoints at epoch ends are exact)."""
    straight = train_detection(DetectionConfig(data_dir=coco, out_dir=str(tmp_path / 'a'), epochs=2, **TINY))
    train_detection(DetectionConfig(data_dir=coco, out_dir=str(tmp_path / 'b'), epochs=1, **TINY))
    resumed = train_detection(DetectionConfig(data_dir=coco, out_dir=str(tmp_path / 'b'), epochs=2, resume='auto',
                                              **TINY))
    assert straight['iters'] == resumed['iters'] == 2
    a = [float(r['train_loss']) for r in _rows(str(tmp_path / 'a')) if r.get('train_loss')]
    b = [float(r['train_loss']) for r in _rows(str(tmp_path / 'b')) if r.get('train_loss')]
    assert a == pytest.approx(b, rel=1e-5)


def test_non_finite_loss_stops_detection(coco, tmp_path, monkeypatch):
    from stepsnet.tasks import detection
    real = detection._detection_loss

    def nan_loss(model, batch):
        loss, parts = real(model, batch)
        return loss * float('nan'), parts
    monkeypatch.setattr(detection, '_detection_loss', nan_loss)
    with pytest.raises(FloatingPointError, match='training loss is nan at step 1 .*no checkpoint was written yet'):
        train_detection(DetectionConfig(data_dir=coco, out_dir=str(tmp_path / 'nan'), epochs=1, **TINY))
