"""Classification training and validation on the shared engine: exact resume after SIGKILL, the non-finite policy,
the run-folder policy, class-name checks, validate's errors, DDP."""
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
from stepsnet.engine import RunError
from stepsnet.tasks import classification as cls
from stepsnet.tasks.classification import (
    ClassificationConfig,
    load_config,
    train_classification,
    validate_classification,
)
from stepsnet.utils import load_checkpoint

KIND = 'stepsnet-cls'

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPE = os.path.join(REPO, 'configs', 'cls', 'digits_cpu.yaml')
# a few small batches per epoch: every test run takes seconds
FAST = dict(batch_size=32, max_train_batches=4, eval_batch_size=180, workers=0, threads=1, progress=False,
            tensorboard=False, warmup_epochs=1)


def fast_config(tmp_path, **kw):
    return load_config(RECIPE, **{**FAST, 'out_dir': str(tmp_path / 'run'), **kw})


def read_log(path):
    with open(path, newline='') as f:
        return list(csv.DictReader(f))


def cli_subprocess(args, **kw):
    code = 'import sys; from stepsnet.cli import main; sys.exit(main(sys.argv[1:]))'
    env = dict(os.environ, OMP_NUM_THREADS='1')
    return subprocess.Popen([sys.executable, '-c', code, *args], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, **kw)


def test_recipe_and_overrides():
    cfg = load_config(RECIPE, epochs=3, scale=[0.5, 1.0])
    assert cfg.model == 'test_steps_resnet' and cfg.dataset == 'digits' and cfg.epochs == 3
    assert cfg.scale == (0.5, 1.0) and cfg.hflip == 0.0
    with pytest.raises(ValueError, match=r"unknown config keys \['learning_rate'\]"):
        load_config(RECIPE, learning_rate=1.0)
    assert load_config(RECIPE, output='x').out_dir == 'x'  # a name of an earlier release still works
    with pytest.raises(ValueError, match="config key 'dtype' was renamed: it is now amp and amp_dtype"):
        load_config(RECIPE, dtype='float16')
    with pytest.raises(FileNotFoundError, match='missing.yaml'):
        load_config('missing.yaml')
    with pytest.raises(ValueError, match="unknown model 'no_such_net'"):
        train_classification(ClassificationConfig(model='no_such_net', **FAST, epochs=1, out_dir='/nonexistent/x'))


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
    full = cli_subprocess(args + ['--out-dir', str(tmp_path / 'full')])
    out, _ = full.communicate(timeout=300)
    assert full.returncode == 0, out.decode()
    reference = read_log(tmp_path / 'full' / 'log.csv')
    assert [float(r['epoch']) for r in reference] == [1, 2, 3]

    run = tmp_path / 'killed'
    proc = cli_subprocess(args + ['--out-dir', str(run)])
    deadline = time.time() + 300
    while time.time() < deadline:  # kill as soon as the first epoch's checkpoint is written
        if (run / 'last.pth').exists():
            break
        assert proc.poll() is None, proc.stdout.read().decode()
        time.sleep(0.02)
    assert proc.poll() is None, 'the run finished before it could be killed'
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = load_checkpoint(run / 'last.pth', KIND)['progress']['step'] // 6
    assert done < 3

    resumed = cli_subprocess(args + ['--out-dir', str(run), '--resume'])
    out, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, out.decode()
    assert f'resumed from {run / "last.pth"} at step {done * 6} of 18 (epoch {done + 1})' in out.decode()
    log = read_log(run / 'log.csv')
    assert [float(r['epoch']) for r in log] == [1, 2, 3]
    for a, b in zip(reference, log):
        for key in ('train_loss', 'val_loss', 'val_top1', 'lr', 'images_seen'):
            assert float(a[key]) == float(b[key]), (key, a, b)
    ck_full = load_checkpoint(tmp_path / 'full' / 'last.pth', KIND)
    ck_res = load_checkpoint(run / 'last.pth', KIND)
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
    _patch_nan(monkeypatch, bad_calls={6})  # second epoch (4 steps per epoch), second step
    cfg = fast_config(tmp_path, epochs=3)
    with pytest.raises(FloatingPointError, match=r'training loss is nan at step 6 .*last good checkpoint'):
        train_classification(cfg)
    ck = load_checkpoint(os.path.join(cfg.out_dir, 'last.pth'), KIND)
    assert ck['progress']['step'] == 4
    assert all(torch.isfinite(v).all() for v in ck['model'].values() if v.is_floating_point())
    assert [float(r['epoch']) for r in read_log(os.path.join(cfg.out_dir, 'log.csv'))] == [1]
    assert not [f for f in os.listdir(cfg.out_dir) if f.endswith('.tmp')]


def test_nan_tolerance_skips_the_bad_update(tmp_path, monkeypatch):
    _patch_nan(monkeypatch, bad_calls={3})
    summary = train_classification(fast_config(tmp_path, epochs=1, nan_tolerance=1))
    ck = load_checkpoint(os.path.join(summary['out_dir'], 'last.pth'), KIND)
    assert ck['progress']['nonfinite'] == 1 and ck['progress']['step'] == 4  # 4 steps, one update skipped
    assert summary['images_seen'] == 3 * 32
    assert all(torch.isfinite(v).all() for v in ck['model'].values() if v.is_floating_point())


def test_train_on_image_folder_then_validate_and_its_errors(tmp_path):
    root = make_image_folder(tmp_path / 'data', per_class=6)
    out = tmp_path / 'run'
    rc = cli_main(['train', '--model', 'test_steps_resnet', '--dataset', 'imagefolder', '--data-dir', root,
                   '--img-size', '32', '--epochs', '1', '--batch-size', '6', '--workers', '0', '--no-progress',
                   '--no-tensorboard', '--out-dir', str(out), '--mixup', '0', '--cutmix', '0', '--model-ema',
                   '--grad-checkpointing', '--warmup-epochs', '0'])
    assert rc == 0
    results = json.loads((out / 'results.json').read_text())
    final = results['final']
    assert results['epochs'] == 1 and results['items_seen'] == 18 and 0 <= final['top1'] <= 100
    assert final['ema_top1'] is not None and results['metric'] == 'score' and results['model'] == 'test_steps_resnet'

    r = validate_classification(checkpoint=str(out / 'last.pth'), dataset='imagefolder', data_dir=root,
                                workers=0, progress=False)
    assert r['images'] == 18 and r['skipped'] == 0 and r['img_size'] == 32
    assert r['top1'] == pytest.approx(final['top1'])
    assert r['loss'] == pytest.approx(final['loss'], rel=1e-5)
    r_ema = validate_classification(checkpoint=str(out / 'last.pth'), dataset='imagefolder', data_dir=root,
                                    workers=0, progress=False, use_ema=True)
    assert r_ema['top1'] == pytest.approx(final['ema_top1'])

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
    digits = train_classification(fast_config(tmp_path, epochs=1, max_train_batches=1,
                                              out_dir=str(tmp_path / 'digits')))
    with pytest.raises(ValueError, match=r"checkpoint .* has 10 classes .* but split 'val' .* has 3"):
        validate_classification(checkpoint=os.path.join(digits['out_dir'], 'last.pth'), dataset='imagefolder',
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


def test_two_process_ddp_trains_one_epoch_of_digits(tmp_path):
    """torchrun with 2 CPU processes (gloo): one shared epoch, evaluation summed over both ranks."""
    script = tmp_path / 'launch.py'
    script.write_text('import sys\nfrom stepsnet.cli import main\nsys.exit(main(sys.argv[1:]))\n')
    out = tmp_path / 'ddp'
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2', str(script),
           'train', '--config', RECIPE, '--epochs', '1', '--batch-size', '32', '--max-train-batches', '5',
           '--workers', '0', '--device', 'cpu', '--no-progress', '--no-tensorboard', '--warmup-epochs', '0',
           '--out-dir', str(out)]
    env = dict(os.environ, OMP_NUM_THREADS='1')
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert '2 processes on cpu, global batch 64' in proc.stdout
    results = json.loads((out / 'results.json').read_text())
    assert results['epochs'] == 1 and results['items_seen'] == 5 * 64
    r = {f'val_{k}': v for k, v in results['final'].items()}
    assert 0.0 <= r['val_top1'] <= 100.0 and r['val_loss'] > 0
    # the validation score over both ranks' shards equals a single-process evaluation of the same weights
    single = validate_classification(checkpoint=str(out / 'last.pth'), workers=0, progress=False)
    assert single['images'] == 360
    # after 5 steps the model is near chance and top-1 turns on near-tied logits: loss and top-5 are compared
    assert single['top5'] == pytest.approx(r['val_top5'], abs=1e-4)
    assert single['loss'] == pytest.approx(r['val_loss'], rel=1e-4)


def test_finished_run_is_never_replaced(tmp_path):
    """A finished run is refused without --resume; resumed with other settings it is refused; nothing changes."""
    cfg = fast_config(tmp_path, epochs=2)
    train_classification(cfg)
    run = tmp_path / 'run'
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    with pytest.raises(RunError, match=r"already holds a run .*pass --resume to continue it, or choose another"):
        train_classification(fast_config(tmp_path, epochs=1))
    with pytest.raises(RunError, match=r"other settings \(lr: 0.003 -> 0.01\)"):
        train_classification(fast_config(tmp_path, epochs=2, lr=1e-2, resume='auto'))
    s = train_classification(fast_config(tmp_path, epochs=2, resume='auto'))  # finished: nothing to train
    assert s['epochs'] == 2
    after = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file() and p.name in before}
    for name in ('last.pth', 'best.pth', 'log.csv'):
        assert after[name] == before[name], name


def test_class_names_are_compared_not_counted(tmp_path):
    root = make_image_folder(tmp_path / 'data', per_class=6)
    out = tmp_path / 'run'
    train_classification(ClassificationConfig(
        model='test_steps_resnet', dataset='imagefolder', data_dir=root, img_size=32, epochs=1, batch_size=6,
        workers=0, progress=False, tensorboard=False, out_dir=str(out), mixup=0, cutmix=0))
    classes = sorted(os.listdir(os.path.join(root, 'val')))
    # rename the val class folders in a rotated order: the same count, labels that would be mapped wrongly
    tmp = [os.path.join(root, 'val', f'tmp{i}') for i in range(len(classes))]
    for c, t in zip(classes, tmp):
        os.rename(os.path.join(root, 'val', c), t)
    for t, c in zip(tmp, classes[1:] + classes[:1]):
        os.rename(t, os.path.join(root, 'val', c + '_renamed'))
    with pytest.raises(ValueError, match='checkpoint .* has 3 classes .*renamed'):
        validate_classification(checkpoint=str(out / 'last.pth'), dataset='imagefolder', data_dir=root, workers=0,
                                progress=False)
    with pytest.raises(ValueError, match="the train split has 3 classes .* but the val split has 3"):
        train_classification(ClassificationConfig(
            model='test_steps_resnet', dataset='imagefolder', data_dir=root, img_size=32, epochs=1, batch_size=6,
            workers=0, progress=False, tensorboard=False, out_dir=str(tmp_path / 'run2'), mixup=0, cutmix=0))
    assert not (tmp_path / 'run2').exists()


def test_initial_checkpoint_takes_a_plain_timm_state_dict(tmp_path):
    import timm
    from safetensors.torch import save_file
    donor = timm.create_model('test_steps_resnet', num_classes=1000)
    torch.save(donor.state_dict(), tmp_path / 'timm.pth')
    save_file({k: v.contiguous() for k, v in donor.state_dict().items()}, str(tmp_path / 'w.safetensors'))
    for i, f in enumerate(('timm.pth', 'w.safetensors')):
        s = train_classification(fast_config(tmp_path, epochs=1, max_train_batches=1, out_dir=str(tmp_path / f'ft{i}'),
                                             initial_checkpoint=str(tmp_path / f)))
        assert s['epochs'] == 1  # the 1000-class head is replaced by a fresh 10-class one
    (tmp_path / 'junk.pth').write_bytes(b'not weights')
    with pytest.raises(ValueError, match="cannot read initial checkpoint .*junk.pth"):
        train_classification(fast_config(tmp_path, epochs=1, out_dir=str(tmp_path / 'ft9'),
                                         initial_checkpoint=str(tmp_path / 'junk.pth')))
