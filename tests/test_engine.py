"""The shared engine on toy models: one step, the non-finite policy, the run-folder policy, the loop, resume."""
import json
import os

import pytest
import torch
import torch.nn as nn
from timm.scheduler import create_scheduler_v2

from stepsnet.engine import (
    FORMAT_VERSION,
    DistEnv,
    RunError,
    RunFolder,
    Schedule,
    TrainState,
    fit,
    no_weight_decay_names,
    resolve_device,
    train_step,
)
from stepsnet.utils.checkpoint import CheckpointError, save_checkpoint

ENV = DistEnv()


def mse(model, batch):
    x, y = batch
    return ((model(x) - y) ** 2).mean()


def toy(seed=0):
    torch.manual_seed(seed)
    return nn.Linear(3, 1)


def batches(start=0, n=4, nan_at=()):
    """Deterministic data: step ``i`` always gets the same batch (a loss of NaN at the steps in ``nan_at``)."""
    i = start
    while True:
        g = torch.Generator().manual_seed(i)
        x = torch.randn(n, 3, generator=g)
        y = x.sum(1, keepdim=True) * 0.5
        if i + 1 in nan_at:
            y = y * float('nan')
        yield [(x, y)]
        i += 1


def test_accumulation_equals_one_large_batch():
    a, b = toy(), toy()
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(8, 3, generator=g), torch.randn(8, 1, generator=g)
    opt_a, opt_b = torch.optim.SGD(a.parameters(), lr=0.1), torch.optim.SGD(b.parameters(), lr=0.1)
    ra = train_step(a, opt_a, [(x, y)], mse, ENV)
    rb = train_step(b, opt_b, [(x[:4], y[:4]), (x[4:], y[4:])], mse, ENV)
    assert ra.finite and rb.finite
    assert float(ra.loss) == pytest.approx(float(rb.loss), rel=1e-6)
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q)
        assert q.grad is None  # cleared after the step


def test_non_finite_loss_skips_the_update_and_clipping_reports_the_norm():
    model = toy()
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(4, 3)
    r = train_step(model, opt, [(x, torch.full((4, 1), float('nan')))], mse, ENV)
    assert not r.finite
    for p, q in zip(before, model.parameters()):
        assert torch.equal(p, q) and q.grad is None
    r = train_step(model, opt, [(x, torch.full((4, 1), 1e3))], mse, ENV, clip_grad=1.0)
    assert r.finite and r.grad_norm > 1.0  # the norm before clipping
    with pytest.raises(ValueError, match='at least one micro-batch'):
        train_step(model, opt, [], mse, ENV)


def test_no_weight_decay_names_reach_into_submodules():
    class Inner(nn.Module):
        def __init__(self):
            super().__init__()
            self.pos = nn.Parameter(torch.zeros(2, 3))

        def no_weight_decay(self):
            return {'pos'}
    outer = nn.Sequential(nn.Linear(3, 3), Inner())
    assert no_weight_decay_names(outer) == ['1.pos']


def _run(tmp_path, total, start_state=None, resume=None, nan_at=(), tolerance=0, time_limit=None, every=2):
    model = toy()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    sched, _ = create_scheduler_v2(opt, 'cosine', num_epochs=8, warmup_epochs=2, warmup_lr=0.01,
                                   step_on_epochs=False, updates_per_epoch=1)
    with RunFolder(str(tmp_path), 'toy', resume, ENV) as run:
        stored = run.open({'lr': 0.05, 'total': total}, mutable=('total',))
        state = TrainState(model, opt, sched)
        if stored is not None:
            state.restore(stored, run.resumed_from)
        x_val = torch.randn(16, 3, generator=torch.Generator().manual_seed(99))

        def evaluate():
            with torch.no_grad():
                return {'loss': float(((model(x_val) - x_val.sum(1, keepdim=True) * 0.5) ** 2).mean())}

        schedule = Schedule(total_steps=total, eval_every=every, checkpoint_every=every, log_every=1,
                            metric='loss', nan_tolerance=tolerance, time_limit=time_limit, progress=False)
        fit(state, run=run, batches=batches(state.progress.step, nan_at=nan_at), loss_fn=mse, evaluate=evaluate,
            schedule=schedule, count=lambda m: len(m[0][0]))
        run.finish(run.results(state, schedule, state.progress.last_eval('loss')))
    return model, state.progress


def test_fit_checkpoints_evaluates_and_resumes_exactly(tmp_path):
    straight, p = _run(tmp_path / 'a', 8)
    assert p.step == 8 and p.items == 32
    rows = p.history
    assert [r['step'] for r in rows] == list(range(1, 9))
    assert all('train_loss' in r and 'lr' in r for r in rows)
    assert [r['step'] for r in rows if 'val_loss' in r] == [2, 4, 6, 8]
    assert os.path.isfile(tmp_path / 'a' / 'last.pth') and os.path.isfile(tmp_path / 'a' / 'best.pth')
    assert p.best == min(r['val_loss'] for r in rows if 'val_loss' in r)
    # half the run, then resumed to the end: the same weights as the straight run
    _run(tmp_path / 'b', 4)
    resumed, p2 = _run(tmp_path / 'b', 8, resume='auto')
    assert p2.step == 8
    for a, b in zip(straight.parameters(), resumed.parameters()):
        torch.testing.assert_close(a, b)


def test_non_finite_policy_in_the_loop(tmp_path):
    _, p = _run(tmp_path / 'skip', 6, nan_at={3}, tolerance=1)
    assert p.step == 6 and p.nonfinite == 1 and p.items == 5 * 4  # the bad step was not trained on
    with pytest.raises(FloatingPointError, match=r'training loss is nan at step 5 .*last good checkpoint .* is kept'):
        _run(tmp_path / 'stop', 8, nan_at={5})
    state = torch.load(tmp_path / 'stop' / 'last.pth', weights_only=True)
    assert state['progress']['step'] == 4


def test_time_limit_stops_with_a_checkpoint(tmp_path):
    _, p = _run(tmp_path / 't', 1000, time_limit=1e-9)
    assert p.step == 1 and torch.load(tmp_path / 't' / 'last.pth', weights_only=True)['progress']['step'] == 1


def test_run_folder_policy(tmp_path):
    _run(tmp_path / 'r', 2)
    last = tmp_path / 'r' / 'last.pth'
    before = last.read_bytes()
    with pytest.raises(RunError, match=r"already holds a run .*step 2.*pass --resume"):
        RunFolder(str(tmp_path / 'r'), 'toy', None, ENV).open({'lr': 0.05, 'total': 2})
    with pytest.raises(RunError, match=r"other settings \(lr: 0.05 -> 0.1\)"):
        RunFolder(str(tmp_path / 'r'), 'toy', 'auto', ENV).open({'lr': 0.1, 'total': 2}, mutable=('total',))
    folder = RunFolder(str(tmp_path / 'r'), 'toy', 'auto', ENV)
    assert folder.open({'lr': 0.05, 'total': 4}, mutable=('total',)) is not None
    assert folder.changes == {'total': (2, 4)}
    folder.write_config({'lr': 0.05, 'total': 4})
    record = json.loads((tmp_path / 'r' / 'config.json').read_text())
    assert record['resumes'][-1]['changed'] == {'total': {'stored': 2, 'now': 4}}
    with pytest.raises(RunError, match='is a folder; expected a checkpoint file'):
        RunFolder(str(tmp_path / 'x'), 'toy', str(tmp_path / 'r'), ENV).open({})
    with pytest.raises(FileNotFoundError, match='to resume from does not exist'):
        RunFolder(str(tmp_path / 'x'), 'toy', str(tmp_path / 'none.pth'), ENV).open({})
    _run(tmp_path / 'other', 2)
    with pytest.raises(RunError, match='holds another run'):
        RunFolder(str(tmp_path / 'other'), 'toy', str(last), ENV).open({'lr': 0.05, 'total': 2})
    (tmp_path / 'file').write_text('x')
    with pytest.raises(RunError, match='is not a folder'):
        RunFolder(str(tmp_path / 'file'), 'toy', None, ENV)
    save_checkpoint({'model': {}, 'progress': {'step': 1}, 'config': {}}, tmp_path / 'old' / 'last.pth', 'toy')
    with pytest.raises(CheckpointError, match=f'layout version None; this stepsnet reads version {FORMAT_VERSION}'):
        RunFolder(str(tmp_path / 'old'), 'toy', 'auto', ENV).open({})
    assert last.read_bytes() == before


def test_devices_are_checked():
    assert resolve_device('cpu') == 'cpu' and resolve_device('auto') in ('cpu', 'cuda')
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        resolve_device('tpu')
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match='no CUDA device is available on this machine'):
            resolve_device('cuda')
