"""LM training on the shared engine: exact resume after SIGKILL, the non-finite policy, the run-folder policy,
bad checkpoints and contexts, sampling, DDP."""
import csv
import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from stepsnet.cli import main
from stepsnet.data.text import prepare_text
from stepsnet.engine import RunError
from stepsnet.models.factory import lm_from_checkpoint
from stepsnet.models.steps_gpt import GPT
from stepsnet.tasks.lm import LMConfig, load_config, sample_lm, train_lm
from stepsnet.utils.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAIN = 'import sys\nfrom stepsnet.cli import main\nsys.exit(main())\n'
KIND = 'stepsnet-lm'


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp('lmdata')
    prepare_text(str(d), max_bytes=300_000)
    return str(d)


def tiny(data_dir, out, **kw):
    args = dict(data_dir=data_dir, out_dir=str(out), model='gpt_tiny', batch_size=4, max_iters=12, lr=3e-3,
                warmup_iters=2, eval_interval=6, eval_iters=2, final_eval_windows=16, log_interval=1,
                progress=False, tensorboard=False, device='cpu', seed=3)
    args.update(kw)
    return LMConfig(**args)


def train_losses(out):
    with open(os.path.join(out, 'log.csv'), newline='') as f:
        return {int(r['step']): float(r['train_loss']) for r in csv.DictReader(f) if r.get('train_loss')}


def cli(args, cwd, env=None):
    script = os.path.join(cwd, '_stepsnet_main.py')
    with open(script, 'w') as f:
        f.write(MAIN)
    e = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''), **(env or {}))
    return [sys.executable, script] + args, e


def test_train_learns_checkpoints_and_samples(data_dir, tmp_path):
    s = train_lm(tiny(data_dir, tmp_path / 'a', model='steps_gpt_tiny', max_iters=30))
    assert s['final']['loss'] < math.log(256) - 0.3
    assert s['tokens_seen'] == 30 * 4 * 32
    state = load_checkpoint(s['checkpoint'], KIND, required=('model', 'optimizer', 'progress'))
    assert state['progress']['step'] == 30 and os.path.basename(s['checkpoint']) == 'last.pth'
    assert os.path.isfile(tmp_path / 'a' / 'best.pth')
    model, info = lm_from_checkpoint(s['checkpoint'])
    assert isinstance(model, GPT) and model.config.num_steps == 3 and not model.training
    texts = sample_lm(s['checkpoint'], prompt='import ', max_new_tokens=10, num_samples=2)
    assert len(texts) == 2 and all(t.startswith('import ') for t in texts)


def test_eval_of_a_checkpoint_repeats_the_runs_final_evaluation(data_dir, tmp_path, capsys):
    s = train_lm(tiny(data_dir, tmp_path / 'run', max_iters=4, eval_interval=4))
    capsys.readouterr()
    out = tmp_path / 'eval.json'
    assert main(['eval', '--checkpoint', s['checkpoint'], '--device', 'cpu', '--out', str(out)]) == 0
    line = capsys.readouterr().out
    assert line.startswith(f'gpt_tiny on {data_dir}/val: loss ') and 'bits/byte' in line
    with open(out) as f:
        r = json.load(f)
    # the run's data, context, windows and batch size: the numbers of the run's final evaluation
    assert r['loss'] == pytest.approx(s['final']['loss'], rel=1e-5) and r['tokens'] == s['final']['tokens']
    assert r['bpb'] == pytest.approx(s['final']['bpb'], rel=1e-5) and r['ppl'] == pytest.approx(s['final']['ppl'])
    assert main(['eval-lm', '--checkpoint', s['checkpoint'], '--device', 'cpu', '--windows', '2', '--json']) == 0
    fewer = json.loads(capsys.readouterr().out)
    assert fewer['windows'] == 2 and fewer['tokens'] == 2 * fewer['block_size']
    assert main(['eval', '--checkpoint', s['checkpoint'], '--data-dir', str(tmp_path / 'none')]) == 2
    assert "data folder '" in capsys.readouterr().err


def test_resume_after_sigkill_gives_the_same_losses(data_dir, tmp_path):
    kw = dict(max_iters=120, checkpoint_interval=5, eval_interval=100, final_eval_windows=0)
    ref = train_lm(tiny(data_dir, tmp_path / 'ref', **kw))
    out = tmp_path / 'killed'
    args = ['train-lm', '--data-dir', data_dir, '--out-dir', str(out), '--model', 'gpt_tiny', '--batch-size', '4',
            '--max-iters', '120', '--lr', '3e-3', '--warmup-iters', '2', '--eval-interval', '100', '--eval-iters', '2',
            '--final-eval-windows', '0', '--log-interval', '1', '--checkpoint-interval', '5', '--seed', '3',
            '--no-progress', '--no-tensorboard', '--device', 'cpu']
    cmd, env = cli(args, str(tmp_path), env={'OMP_NUM_THREADS': str(torch.get_num_threads())})
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    ckpt = out / 'last.pth'
    deadline = time.time() + 120
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, 'the run ended before it could be killed'
    killed_at = load_checkpoint(ckpt, KIND)['progress']['step']
    assert 5 <= killed_at < 120
    res = subprocess.run(cmd + ['--resume'], env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    ref_losses, resumed = train_losses(ref['out_dir']), train_losses(out)
    assert sorted(resumed) == list(range(1, 121))
    for it in range(killed_at + 1, 121):
        assert resumed[it] == pytest.approx(ref_losses[it], rel=1e-6, abs=1e-7), f'iteration {it}'
    a = load_checkpoint(ckpt, KIND)['model']
    b = load_checkpoint(ref['checkpoint'], KIND)['model']
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)


def _nan_after(monkeypatch, calls_ok):
    original = GPT.forward
    calls = {'n': 0}

    def forward(self, idx, targets=None):
        logits, loss = original(self, idx, targets)
        if self.training:
            calls['n'] += 1
            if calls['n'] > calls_ok:
                loss = loss * float('nan')
        return logits, loss

    monkeypatch.setattr(GPT, 'forward', forward)


def test_non_finite_loss_stops_and_keeps_the_checkpoint(data_dir, tmp_path, monkeypatch):
    _nan_after(monkeypatch, 7)
    cfg = tiny(data_dir, tmp_path / 'nan', max_iters=20, checkpoint_interval=5)
    with pytest.raises(FloatingPointError, match=r'training loss is nan at step 8 .*last good checkpoint .* is kept'):
        train_lm(cfg)
    state = load_checkpoint(tmp_path / 'nan' / 'last.pth', KIND, required=('model',))
    assert state['progress']['step'] == 6  # checkpoints at 5 and at the evaluation of step 6; NaN from step 8
    assert all(torch.isfinite(v).all() for v in state['model'].values())


def test_run_folder_policy(data_dir, tmp_path):
    train_lm(tiny(data_dir, tmp_path / 'r', max_iters=2, final_eval_windows=0))
    before = (tmp_path / 'r' / 'last.pth').read_bytes()
    with pytest.raises(RunError, match=r"already holds a run .*step 2.*pass --resume"):
        train_lm(tiny(data_dir, tmp_path / 'r', max_iters=4))
    with pytest.raises(RunError, match=r"other settings \(model: 'gpt_tiny' -> 'steps_gpt_tiny'\)"):
        train_lm(tiny(data_dir, tmp_path / 'r', max_iters=4, model='steps_gpt_tiny', resume='auto'))
    assert (tmp_path / 'r' / 'last.pth').read_bytes() == before
    # a field that may change on resume is recorded, never silently rewritten
    s = train_lm(tiny(data_dir, tmp_path / 'r', max_iters=4, final_eval_windows=0, resume='auto'))
    assert s['iters'] == 4
    record = json.loads((tmp_path / 'r' / 'config.json').read_text())
    assert record['config']['max_iters'] == 2 and record['config_now']['max_iters'] == 4
    assert record['resumes'][-1]['changed'] == {'max_iters': {'stored': 2, 'now': 4}}


def test_truncated_and_foreign_checkpoints(data_dir, tmp_path):
    s = train_lm(tiny(data_dir, tmp_path / 'c', max_iters=2, final_eval_windows=0))
    good = open(s['checkpoint'], 'rb').read()
    trunc = tmp_path / 'trunc.pt'
    trunc.write_bytes(good[:len(good) // 2])
    with pytest.raises(CheckpointError, match='cannot read checkpoint'):
        lm_from_checkpoint(str(trunc))
    foreign = tmp_path / 'foreign.pt'
    torch.save({'state_dict': {'w': torch.zeros(2)}}, foreign)
    with pytest.raises(CheckpointError, match="expected a 'stepsnet-lm' checkpoint"):
        lm_from_checkpoint(str(foreign))
    other = tmp_path / 'other.pt'
    save_checkpoint({'model': {}}, other, 'stepsnet-cls')
    with pytest.raises(CheckpointError, match="format 'stepsnet-cls'"):
        lm_from_checkpoint(str(other))
    with pytest.raises(FileNotFoundError, match='does not exist'):
        lm_from_checkpoint(str(tmp_path / 'missing.pt'))
    # resuming from a truncated checkpoint fails and leaves it as it was
    (tmp_path / 'c' / 'last.pth').write_bytes(good[:100])
    with pytest.raises(CheckpointError, match='cannot read checkpoint'):
        train_lm(tiny(data_dir, tmp_path / 'c', max_iters=4, resume='auto'))
    assert (tmp_path / 'c' / 'last.pth').read_bytes() == good[:100]


def test_bad_values_and_old_field_names(data_dir, tmp_path, capsys):
    with pytest.raises(ValueError, match='block_size=64 is longer than the model'):
        train_lm(tiny(data_dir, tmp_path / 'x', block_size=64))
    assert not (tmp_path / 'x').exists()
    with pytest.raises(FileNotFoundError, match='prepare-text'):
        train_lm(tiny(str(tmp_path / 'nodata'), tmp_path / 'x'))
    with pytest.raises(ValueError, match='batch_size must be >= 1, got 0'):
        tiny(data_dir, tmp_path / 'x', batch_size=0)
    cfg = tmp_path / 'old.yaml'
    cfg.write_text('grad_clip: 1.0\nmodel_args: {dropout: 0.1}\n')
    old = load_config(str(cfg))  # names of an earlier release are read under their new names, with a note
    assert old.clip_grad == 1.0 and old.model_kwargs == {'dropout': 0.1}
    err = capsys.readouterr().err
    assert "'grad_clip' in" in err and "is now 'clip_grad'" in err and "is now 'model_kwargs'" in err
    cfg.write_text('beta2: 0.99\n')  # one element of the list field that replaced beta1 / beta2
    assert load_config(str(cfg)).opt_betas == (0.9, 0.99)
    assert "config key 'beta2' in" in capsys.readouterr().err
    cfg.write_text('clip_grad: 1.0\ngrad_clip: 2.0\n')
    with pytest.raises(ValueError, match="config keys 'grad_clip' and 'clip_grad' .* name the same field"):
        load_config(str(cfg))
    cfg.write_text('lr: fast\n')
    with pytest.raises(ValueError, match=r"lr in '.*old.yaml': expected a number, got 'fast'"):
        load_config(str(cfg))


def test_ddp_two_processes_gloo(data_dir, tmp_path):
    out = tmp_path / 'ddp'
    args = ['train-lm', '--data-dir', data_dir, '--out-dir', str(out), '--model', 'steps_gpt_tiny',
            '--batch-size', '4', '--max-iters', '4', '--eval-interval', '4', '--eval-iters', '2',
            '--final-eval-windows', '8', '--log-interval', '2', '--no-progress', '--no-tensorboard',
            '--device', 'cpu']
    cmd, env = cli(args, str(tmp_path), env={'OMP_NUM_THREADS': '1'})
    launcher = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2', '--master_port', '29517']
    res = subprocess.run(launcher + cmd[1:], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    state = load_checkpoint(out / 'last.pth', KIND, required=('model',))
    assert state['progress']['step'] == 4
    assert state['progress']['items'] == 4 * 2 * 4 * 32  # tokens of both ranks
    assert json.loads((out / 'config.json').read_text())['world_size'] == 2
