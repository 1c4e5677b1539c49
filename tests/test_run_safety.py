"""A run folder is never written by two processes, never left half-made, and every failure a user can cause is one
line naming what is wrong; the message of each case is asserted along with what is (not) on disk."""
import errno
import os
import signal
import socket
import subprocess
import sys

import pytest
import torch
from snapshots import snapshot as files_of
from test_cls_data import make_image_folder

from stepsnet.cli import main as cli_main

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPE = os.path.join(REPO, 'configs', 'cls', 'digits_cpu.yaml')
LOCK = os.path.join(REPO, 'stepsnet', 'utils', 'lock.py')
FAST = ['--epochs', '1', '--batch-size', '32', '--max-train-batches', '1', '--eval-batch-size', '360', '--workers',
        '0', '--threads', '1', '--no-tensorboard', '--no-progress', '--warmup-epochs', '0']
# a second process that holds a folder's lock until its stdin closes (the lock module alone: no torch to import)
HOLD = '''import importlib.util, sys
spec = importlib.util.spec_from_file_location('lock', sys.argv[2])
lock = importlib.util.module_from_spec(spec)
spec.loader.exec_module(lock)
with lock.lock_folder(sys.argv[1]):
    print('locked', flush=True)
    sys.stdin.read()
'''


def train(out, *extra, recipe=RECIPE):
    return cli_main(['train', '-c', recipe, *FAST, '--out-dir', str(out), *extra])


def snapshot(folder):
    """:func:`snapshots.snapshot` of ``folder``, None when it does not exist."""
    return files_of(folder) if os.path.exists(folder) else None


def one_line_error(capsys, *needles):
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith('stepsnet ')]
    assert len(lines) == 1 and 'Traceback' not in err, err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_a_second_writer_is_refused_and_a_dead_writers_lock_is_taken_over(tmp_path, capsys):
    out = tmp_path / 'run'
    out.mkdir()
    holder = subprocess.Popen([sys.executable, '-c', HOLD, str(out), LOCK], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == b'locked'
        before = snapshot(out)
        assert train(out) == 2
        one_line_error(capsys, f'is in use: process {holder.pid} on host {socket.gethostname()}')
        assert snapshot(out) == before  # nothing written, the holder's lock file untouched
    finally:
        holder.send_signal(signal.SIGKILL)  # a lock outlives no process: the kernel drops it with its holder
        holder.wait()
    assert train(out) == 0
    err = capsys.readouterr().err
    assert f'taking over the lock left by process {holder.pid} on host {socket.gethostname()}, which is no ' \
           'longer running' in err
    assert (out / 'last.pth').is_file() and not (out / '.lock').exists()


def test_bad_recipe_values_and_misspelt_keys_and_flags_are_one_line(tmp_path, capsys):
    out = tmp_path / 'run'
    recipe = tmp_path / 'r.yaml'
    for text, message in (('lr: fast\n', f"lr in {str(recipe)!r}: expected a number (or null), got 'fast'"),
                          ('epochs: three\n', f"epochs in {str(recipe)!r}: expected a whole number, got 'three'"),
                          ('epoch: 3\n', f"unknown config keys ['epoch'] in {str(recipe)!r}"),
                          ('epochs: 0\n', 'epochs must be >= 1, got 0')):
        recipe.write_text(open(RECIPE).read() + text)
        assert cli_main(['train', '-c', str(recipe), '--out-dir', str(out)]) == 2
        line = one_line_error(capsys, message)
        if 'epoch:' in text:
            assert "did you mean 'epochs'" in line
        assert not out.exists()
    with pytest.raises(SystemExit) as e:
        train(out, '--out-dirr', str(out))
    assert e.value.code == 2 and 'unrecognized argument --out-dirr; did you mean --out-dir?' in capsys.readouterr().err
    assert not out.exists()


def test_file_system_failures_are_one_line_naming_the_path(tmp_path, capsys, monkeypatch):
    out = tmp_path / 'ro' / 'run'
    real = os.makedirs

    def read_only(path, *a, **kw):
        if str(path).startswith(str(tmp_path / 'ro')):
            raise OSError(errno.EROFS, 'Read-only file system', str(path))
        return real(path, *a, **kw)
    monkeypatch.setattr(os, 'makedirs', read_only)
    assert train(out) == 2
    one_line_error(capsys, f"cannot write '{out}': the file system is read-only")
    monkeypatch.setattr(os, 'makedirs', real)
    assert not out.exists()

    monkeypatch.setattr(os, 'access', lambda path, mode: False)
    assert train(out) == 2
    one_line_error(capsys, f'cannot write run folder {str(out)!r}', 'is not writable')
    monkeypatch.undo()
    assert not out.exists()


def test_a_full_disk_keeps_the_old_checkpoint_and_a_failed_start_leaves_no_folder(tmp_path, capsys, monkeypatch):
    out = tmp_path / 'run'
    assert train(out) == 0
    before = snapshot(out)
    save = torch.save

    def disk_full(obj, f, *a, **kw):
        f.write(b'partial')
        raise OSError(errno.ENOSPC, 'No space left on device')
    monkeypatch.setattr(torch, 'save', disk_full)
    assert train(out, '--resume', '--epochs', '2') == 2
    last = out / 'last.pth'
    one_line_error(capsys, f"cannot write '{last}': the disk is full; '{last}' is unchanged")
    after = snapshot(out)
    for name in ('last.pth', 'best.pth'):
        assert after[name] == before[name], name
    assert not [n for n in after if n.endswith('.tmp')]
    fresh = tmp_path / 'fresh'
    assert train(fresh) == 2
    one_line_error(capsys, 'the disk is full')
    assert not fresh.exists()  # a start that failed leaves no folder behind
    monkeypatch.setattr(torch, 'save', save)


def test_an_error_in_a_loader_worker_is_its_own_first_line(tmp_path, capsys):
    root = make_image_folder(tmp_path / 'data', per_class=3)
    with open(os.path.join(root, 'train', 'dog', '1.png'), 'wb') as f:
        f.write(b'GIF89a broken')
    out = tmp_path / 'run'
    rc = cli_main(['train', '--model', 'test_steps_resnet', '--dataset', 'imagefolder', '--data-dir', root,
                   '--img-size', '32', '--epochs', '1', '--batch-size', '9', '--workers', '1', '--no-progress',
                   '--no-tensorboard', '--threads', '1', '--out-dir', str(out), '--mixup', '0', '--cutmix', '0',
                   '--warmup-epochs', '0'])
    assert rc == 2
    line = one_line_error(capsys, 'stepsnet train: error: cannot decode image file ', 'dog/1.png')
    assert 'DataLoader worker' not in line and 'File "' not in line and len(line) < 400
    assert not out.exists()


def test_honest_messages_finished_resume_missing_and_a_damaged_last_checkpoint(tmp_path, capsys):
    out = tmp_path / 'run'
    assert train(out) == 0
    capsys.readouterr()
    before = snapshot(out)
    assert train(out, '--resume') == 0
    assert f'{out}: the run is finished (1 of 1 step); nothing to do' in capsys.readouterr().out
    assert snapshot(out) == before  # config.json, log.csv, results.json: not rewritten

    missing = tmp_path / 'missing'
    assert train(missing, '--resume') == 2
    one_line_error(capsys, f'--resume: {str(missing)!r} does not exist, so there is no run to continue')
    assert not missing.exists()

    last, best = out / 'last.pth', out / 'best.pth'
    last.write_bytes(last.read_bytes()[:1000])  # truncated, as by a full disk outside stepsnet
    before = snapshot(out)
    assert train(out, '--resume', '--epochs', '2') == 2
    one_line_error(capsys, f'cannot read checkpoint {str(last)!r}', f'{str(best)!r} is intact (step 1): continue '
                   f'from it with --resume {best}')
    assert snapshot(out) == before
    assert train(out, '--resume', str(best), '--epochs', '2') == 0
    assert f'resumed from {best} at step 1 of 2' in capsys.readouterr().out
    assert torch.load(last, weights_only=True)['progress']['step'] == 2
