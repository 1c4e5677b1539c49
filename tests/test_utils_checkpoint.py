"""Atomic writes: complete files with ordinary permissions, nothing left behind on failure."""
import os
import stat

import pytest
import torch

from stepsnet.utils.checkpoint import CheckpointError, atomic_write_text, load_checkpoint, save_checkpoint


def test_atomic_write_gives_the_mode_open_would(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / 'a.csv', 'x\n')
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / 'a.csv').st_mode) == 0o644
    assert (tmp_path / 'a.csv').read_text() == 'x\n'


def test_failed_write_leaves_old_file_and_no_temporaries(tmp_path):
    target = tmp_path / 'ckpt.pt'
    save_checkpoint({'w': torch.ones(2)}, target, kind='test')

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError('cannot save this')

    with pytest.raises(RuntimeError, match='cannot save this'):
        save_checkpoint({'w': Unpicklable()}, target, kind='test')
    assert sorted(p.name for p in tmp_path.iterdir()) == ['ckpt.pt']
    assert torch.equal(load_checkpoint(target, kind='test')['w'], torch.ones(2))


def test_foreign_and_truncated_checkpoints(tmp_path):
    save_checkpoint({'w': torch.ones(2)}, tmp_path / 'a.pt', kind='other')
    with pytest.raises(CheckpointError, match="format 'other'; expected a 'test' checkpoint"):
        load_checkpoint(tmp_path / 'a.pt', kind='test')
    data = (tmp_path / 'a.pt').read_bytes()
    (tmp_path / 'b.pt').write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match='cannot read checkpoint'):
        load_checkpoint(tmp_path / 'b.pt', kind='other')
