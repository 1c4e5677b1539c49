"""Classification training and validation: exact resume after SIGKILL, the NaN guard, validate's errors, compare."""
import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from test_cls_data import make_image_folder

from stepsnet.cli import main as cli_main
from stepsnet.tasks import classification as cls
from stepsnet.tasks.classification import (
    ClassificationConfig,
    compare_classification,
    load_config,
    train_classification,
    validate_classification,
)
from stepsnet.utils import load_checkpoint

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPE = os.path.join(REPO, 'configs', 'cls', 'digits_cpu.yaml')
# a few small batches per epoch: every test run takes seconds
FAST = dict(batch_size=32, max_train_batches=4, val_batch_size=180, workers=0, threads=1, progress=False,
            tensorboard=False, warmup_epochs=1)


def fast_config(tmp_path, **kw):
    return load_config(RECIPE, dict(FAST, output=str(tmp_path / 'run'), **kw))


def read_log(path):
    with open(path, newline='') as f:
        return list(csv.DictReader(f))


def cli_subprocess(args, **kw):
    code = 'import sys; from stepsnet.cli import main; sys.exit(main(sys.argv[1:]))'
    env = dict(os.environ, OMP_NUM_THREADS='1')
    return subprocess.Popen([sys.executable, '-c', code, *args], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, **kw)


def test_recipe_and_overrides():
    cfg = load_config(RECIPE, dict(epochs=3, scale=[0.5, 1.0]))
    assert cfg.model == 'test_steps_resnet' and cfg.dataset == 'digits' and cfg.epochs == 3
    assert cfg.scale == (0.5, 1.0) and cfg.hflip == 0.0
    with pytest.raises(ValueError, match=r"unknown config keys \['learning_rate'\]"):
        load_config(RECIPE, dict(learning_rate=1.0))
    with pytest.raises(FileNotFoundError, match='missing.yaml'):
        load_config('missing.yaml')
    with pytest.raises(ValueError, match="unknown model 'no_such_net'"):
        train_classification(ClassificationConfig(model='no_such_net', **FAST, epochs=1))


def test_every_recipe_loads():
    folder = os.path.join(REPO, 'configs', 'cls')
    names = sorted(f for f in os.listdir(folder) if f.endswith('.yaml'))
    assert 'digits_cpu.yaml' in names and len(names) >= 5
    for name in names:
        cfg = load_config(os.path.join(folder, name))
        assert cfg.epochs >= 1
        with open(os.path.join(folder, name)) as f:
            assert 'source:' in f.read(), f'{name} must cite its source'


def test_resume_after_sigkill_reproduces_the_uninterrupted_losses(tmp_path):
    args = ['train', '--config', RECIPE, '--epochs', '3', '--batch-size', '32', '--max-train-batches', '6',
            '--workers', '0', '--threads', '1', '--no-progress', '--no-tensorboard', '--warmup-epochs', '1']
    full = cli_subprocess(args + ['--output', str(tmp_path / 'full')])
    out, _ = full.communicate(timeout=300)
    assert full.returncode == 0, out.decode()
    reference = read_log(tmp_path / 'full' / 'log.csv')
    assert [int(r['epoch']) for r in reference] == [0, 1, 2]

    run = tmp_path / 'killed'
    proc = cli_subprocess(args + ['--output', str(run)])
    deadline = time.time() + 300
    while time.time() < deadline:  # kill as soon as the first epoch's checkpoint and log row are written
        if (run / 'log.csv').exists() and len(read_log(run / 'log.csv')) >= 1:
            break
        assert proc.poll() is None, proc.stdout.read().decode()
        time.sleep(0.02)
    assert proc.poll() is None, 'the run finished before it could be killed'
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = load_checkpoint(run / 'last.pth', cls.CHECKPOINT_KIND)['epoch']
    assert done < 2

    resumed = cli_subprocess(args + ['--output', str(run), '--resume', 'auto'])
    out, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, out.decode()
    assert f'resumed from {run / "last.pth"} at epoch {done + 1}' in out.decode()
    log = read_log(run / 'log.csv')
    assert [int(r['epoch']) for r in log] == [0, 1, 2]
    for a, b in zip(reference, log):
        for key in ('train_loss', 'val_loss', 'val_top1', 'lr', 'images_seen'):
            assert float(a[key]) == float(b[key]), (key, a, b)
    ck_full = load_checkpoint(tmp_path / 'full' / 'last.pth', cls.CHECKPOINT_KIND)
    ck_res = load_checkpoint(run / 'last.pth', cls.CHECKPOINT_KIND)
    for k, v in ck_full['model'].items():
        assert torch.equal(v, ck_res['model'][k]), k


class _NaNAt(torch.nn.Module):
    """Wraps a classifier; its training forward returns NaN logits at the given 1-based calls."""

    def __init__(self, model, bad_calls):
        super().__init__()
        self.model, self.bad_calls, self.calls = model, set(bad_calls), 0

    def forward(self, x):
        out = self.model(x)
        if self.training:
            self.calls += 1
            if self.calls in self.bad_calls:
                out = out * float('nan')
        return out


def _patch_nan(monkeypatch, bad_calls):
    real = cls.create_classifier
    monkeypatch.setattr(cls, 'create_classifier', lambda *a, **k: _NaNAt(real(*a, **k), bad_calls))


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    _patch_nan(monkeypatch, bad_calls={6})  # second epoch (4 updates per epoch), second step
    cfg = fast_config(tmp_path, epochs=3)
    with pytest.raises(FloatingPointError, match=r'non-finite training loss \(nan\) at epoch 2, step 2'):
        train_classification(cfg)
    ck = load_checkpoint(os.path.join(cfg.output, 'last.pth'), cls.CHECKPOINT_KIND)
    assert ck['epoch'] == 0 and ck['num_updates'] == 4
    assert all(torch.isfinite(v).all() for v in ck['model'].values() if v.is_floating_point())
    assert [int(r['epoch']) for r in read_log(os.path.join(cfg.output, 'log.csv'))] == [0]
    assert not [f for f in os.listdir(cfg.output) if f.endswith('.tmp')]


def test_nan_tolerance_skips_the_bad_update(tmp_path, monkeypatch):
    _patch_nan(monkeypatch, bad_calls={3})
    summary = train_classification(fast_config(tmp_path, epochs=1, nan_tolerance=1))
    ck = load_checkpoint(os.path.join(summary['output'], 'last.pth'), cls.CHECKPOINT_KIND)
    assert ck['nonfinite'] == 1 and ck['num_updates'] == 3  # 4 batches, one update skipped
    assert summary['images_seen'] == 3 * 32
    assert all(torch.isfinite(v).all() for v in ck['model'].values() if v.is_floating_point())


def test_train_on_image_folder_then_validate_and_its_errors(tmp_path):
    root = make_image_folder(tmp_path / 'data', per_class=6)
    out = tmp_path / 'run'
    rc = cli_main(['train', '--model', 'test_steps_resnet', '--dataset', 'imagefolder', '--data-dir', root,
                   '--img-size', '32', '--epochs', '1', '--batch-size', '6', '--workers', '0', '--no-progress',
                   '--no-tensorboard', '--output', str(out), '--mixup', '0', '--cutmix', '0', '--model-ema',
                   '--grad-checkpointing'])
    assert rc == 0
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['epochs'] == 1 and summary['images_seen'] == 18 and 0 <= summary['final_top1'] <= 100
    assert summary['final_ema_top1'] is not None

    r = validate_classification(checkpoint=str(out / 'last.pth'), dataset='imagefolder', data_dir=root,
                                workers=0, progress=False)
    assert r['images'] == 18 and r['skipped'] == 0 and r['img_size'] == 32
    assert r['top1'] == pytest.approx(summary['final_top1'])
    assert r['loss'] == pytest.approx(summary['final_val_loss'], rel=1e-5)
    r_ema = validate_classification(checkpoint=str(out / 'last.pth'), dataset='imagefolder', data_dir=root,
                                    workers=0, progress=False, use_ema=True)
    assert r_ema['top1'] == pytest.approx(summary['history'][-1]['ema_val_top1'])

    # a corrupt file: an error naming it, or a warning and one image fewer with --skip-corrupt
    bad = os.path.join(root, 'val', 'owl', '3.png')
    with open(bad, 'wb') as f:
        f.write(b'GIF89a broken')
    with pytest.raises(ValueError, match=r'cannot decode image file .*owl/3\.png'):
        validate_classification(checkpoint=str(out / 'last.pth'), dataset='imagefolder', data_dir=root,
                                workers=0, progress=False)
    with pytest.warns(UserWarning, match=r'owl/3\.png'):
        r = validate_classification(checkpoint=str(out / 'last.pth'), dataset='imagefolder', data_dir=root,
                                    workers=0, progress=False, skip_corrupt=True)
    assert r['images'] == 17 and r['skipped'] == 1

    # the 10-class digits checkpoint cannot score a 3-class folder
    digits = train_classification(fast_config(tmp_path, epochs=1, max_train_batches=1))
    with pytest.raises(ValueError, match=r'has 3 classes, but checkpoint .* was trained for 10'):
        validate_classification(checkpoint=os.path.join(digits['output'], 'last.pth'), dataset='imagefolder',
                                data_dir=root, workers=0, progress=False, skip_corrupt=True)
    with pytest.raises(FileNotFoundError, match='does_not_exist'):
        validate_classification(model='test_steps_resnet', dataset='imagefolder',
                                data_dir=str(tmp_path / 'does_not_exist'), progress=False)
    with pytest.raises(FileNotFoundError, match="checkpoint '.*nothing.pth' does not exist"):
        validate_classification(checkpoint=str(tmp_path / 'nothing.pth'))


def test_validate_cli_reports_errors_cleanly(tmp_path, capsys):
    rc = cli_main(['validate', '--model', 'test_steps_resnet', '--dataset', 'imagefolder', '--data-dir',
                   str(tmp_path / 'missing'), '--no-progress'])
    assert rc == 2
    assert 'missing' in capsys.readouterr().err
    root = make_image_folder(tmp_path / 'data')
    rc = cli_main(['validate', '--model', 'test_steps_resnet', '--dataset', 'imagefolder', '--data-dir', root,
                   '--workers', '0', '--img-size', '32', '--json', '--no-progress'])
    assert rc == 0
    r = json.loads(capsys.readouterr().out)
    assert r['images'] == 12 and r['model'] == 'test_steps_resnet'


def test_compare_classification_writes_the_report(tmp_path):
    cfg = fast_config(tmp_path, epochs=2, max_train_batches=2)
    res = compare_classification('test_steps_resnet', 'test_steps_resnet', cfg, output=str(tmp_path / 'cmp'),
                                 seeds=(0, 1), baseline_kwargs=cls.PLAIN_TWIN_KWARGS)
    for role in ('baseline', 'steps'):
        r = res[role]
        assert {'name', 'params', 'val_top1', 'val_loss', 'images_seen'} <= set(r)
        assert r['images_seen'] == 2 * 2 * 32 and len(r['curve']) == 2
        assert [p['seed'] for p in r['per_seed']] == [0, 1]
        assert r['val_top1'] == pytest.approx(sum(p['val_top1'] for p in r['per_seed']) / 2)
        assert (tmp_path / 'cmp' / 'seed1' / role / 'last.pth').exists()
    assert res['task'] == 'cls' and len(res['delta_val_top1_per_seed']) == 2
    assert res['baseline']['params'] != res['steps']['params']  # the plain twin has a few more BN params
    # validate rebuilds the plain twin from the checkpoint's model_kwargs, not the registered Steps default
    ckpt = str(tmp_path / 'cmp' / 'seed0' / 'baseline' / 'last.pth')
    val = cls.validate_classification(ckpt, workers=0, progress=False)
    assert val['params'] == res['baseline']['params']
    assert val['top1'] == pytest.approx(res['baseline']['per_seed'][0]['val_top1'])
    on_disk = json.loads((tmp_path / 'cmp' / 'results.json').read_text())
    assert on_disk['steps']['val_top1'] == res['steps']['val_top1']
    report = (tmp_path / 'cmp' / 'report.md').read_text()
    assert '| baseline | test_steps_resnet (num_steps=[1, 1, 1, 1], steps_move=[0, 0, 0, 0]) |' in report
    assert '| steps | test_steps_resnet |' in report and 'curves.png' in report
    assert (tmp_path / 'cmp' / 'curves.png').stat().st_size > 1000


def test_two_process_ddp_trains_one_epoch_of_digits(tmp_path):
    """torchrun with 2 CPU processes (gloo): one shared epoch, evaluation summed over both ranks."""
    script = tmp_path / 'launch.py'
    script.write_text('import sys\nfrom stepsnet.cli import main\nsys.exit(main(sys.argv[1:]))\n')
    out = tmp_path / 'ddp'
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2', str(script),
           'train', '--config', RECIPE, '--epochs', '1', '--batch-size', '32', '--max-train-batches', '5',
           '--workers', '0', '--device', 'cpu', '--no-progress', '--no-tensorboard', '--output', str(out)]
    env = dict(os.environ, OMP_NUM_THREADS='1')
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert '2 process(es) on cpu, global batch 64' in proc.stdout
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['epochs'] == 1 and summary['images_seen'] == 5 * 64
    r = summary['history'][0]
    assert 0.0 <= r['val_top1'] <= 100.0 and r['val_loss'] > 0
    # the validation score over both ranks' shards equals a single-process evaluation of the same weights
    single = validate_classification(checkpoint=str(out / 'last.pth'), workers=0, progress=False)
    assert single['images'] == 360
    assert single['top1'] == pytest.approx(r['val_top1'], abs=1e-6)
    assert single['loss'] == pytest.approx(r['val_loss'], rel=1e-4)


def test_compare_arguments_build_the_digits_comparison(monkeypatch):
    """``stepsnet compare --task cls`` options: the plain twin is the default baseline of the tiny Steps-ResNet."""
    import argparse
    p = argparse.ArgumentParser()
    p.add_argument('--out', default='runs/compare')
    p.add_argument('--seeds', type=lambda t: [int(x) for x in t.split(',')], default=[0])
    p.add_argument('--config', default=None)
    p.add_argument('--device', default='auto')
    p.add_argument('--no-progress', action='store_true')
    cls.compare_add_arguments(p)
    seen = {}
    monkeypatch.setattr(cls, 'compare_classification', lambda *a, **k: seen.update(args=a, kwargs=k) or {})
    cls.compare_from_args(p.parse_args(['--out', 'x', '--seeds', '0,1', '--cls-epochs', '2', '--no-progress']))
    baseline, steps, cfg = seen['args']
    assert (baseline, steps) == ('test_steps_resnet', 'test_steps_resnet')
    assert seen['kwargs'] == dict(output='x', seeds=[0, 1], baseline_kwargs=cls.PLAIN_TWIN_KWARGS)
    assert cfg.dataset == 'digits' and cfg.epochs == 2 and cfg.progress is False
