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


def test_a_folder_that_cannot_be_written_is_named_not_the_temporary_file(tmp_path, monkeypatch):
    import errno
    import tempfile

    from stepsnet.utils.checkpoint import StorageError

    def read_only(*args, dir=None, **kwargs):
        raise PermissionError(errno.EACCES, 'Permission denied', os.path.join(dir, '.a.csv.x1y2.tmp'))
    monkeypatch.setattr(tempfile, 'mkstemp', read_only)
    target = tmp_path / 'out' / 'a.csv'
    with pytest.raises(StorageError) as e:
        atomic_write_text(target, 'x\n')
    assert str(e.value) == f"cannot write '{target}': the folder '{tmp_path / 'out'}' is not writable (no permission " \
                           "to write there)"
    assert '.tmp' not in str(e.value)


class Foreign:
    """A class of another program's checkpoint: the safe loader does not unpickle it."""


def test_a_file_the_safe_loader_refuses_is_explained_without_torchs_advice(tmp_path):
    import warnings

    from stepsnet.utils.loading import checkpoint_kind
    torch.save({'format': 'test', 'w': Foreign()}, tmp_path / 'obj.pt')
    torch.save({'format': 'test', 'w': torch.ones(2)}, tmp_path / 'p4.pt', pickle_protocol=4)
    for name in ('obj.pt', 'p4.pt'):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            for read in (lambda p: load_checkpoint(p, kind='test'), checkpoint_kind):
                with pytest.raises(CheckpointError) as e:
                    read(tmp_path / name)
                text = str(e.value)
                assert 'stepsnet reads tensors, containers and numbers only' in text, text
                assert 'weights_only' not in text and '\x1b' not in text and '\n' not in text
        assert not [w for w in caught if 'pickle protocol' in str(w.message)]
