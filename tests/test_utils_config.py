"""One loader for every task's YAML recipe."""
import dataclasses
from typing import Optional

import pytest

from stepsnet.utils.config import load_dataclass_config


@dataclasses.dataclass
class Recipe:
    lr: float = 0.1
    epochs: int = 1
    model: Optional[str] = None


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / 'r.yaml'
    path.write_text('lr: 0.5\nepochs: 3\nsource: "a paper, Table 9"\n')
    cfg = load_dataclass_config(Recipe, str(path), {'epochs': 7, 'model': None})
    assert cfg == Recipe(lr=0.5, epochs=7, model=None)


def test_errors_name_the_file_and_the_key(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"config file '.*nope.yaml' does not exist"):
        load_dataclass_config(Recipe, str(tmp_path / 'nope.yaml'))
    bad = tmp_path / 'bad.yaml'
    bad.write_text('lr: [1, 2\n')
    with pytest.raises(ValueError, match='is not valid YAML'):
        load_dataclass_config(Recipe, str(bad))
    lst = tmp_path / 'list.yaml'
    lst.write_text('- 1\n- 2\n')
    with pytest.raises(ValueError, match='must hold a mapping of Recipe fields, got list'):
        load_dataclass_config(Recipe, str(lst))
    with pytest.raises(ValueError, match=r"unknown config keys \['learning_rate'\]; expected fields of Recipe"):
        load_dataclass_config(Recipe, None, {'learning_rate': 1.0})


def test_one_vocabulary_across_the_tasks(tmp_path, capsys):
    """The same default seed everywhere; an interval in steps is ``*_interval``, one in epochs says so; an earlier
    name is read under its new name, or refused with it where its meaning changed."""
    from stepsnet.config import (
        ClassificationConfig,
        DetectionConfig,
        LMConfig,
        RunConfig,
        SegmentationConfig,
        detection,
        segmentation,
    )
    tasks = (ClassificationConfig, DetectionConfig, LMConfig, SegmentationConfig)
    assert {cls().seed for cls in tasks} == {RunConfig().seed} == {0}
    assert all('seed' not in vars(cls).get('__annotations__', {}) for cls in tasks)  # one field, RunConfig's
    assert DetectionConfig().eval_every_epochs == 1 and not hasattr(DetectionConfig(), 'eval_interval')
    recipe = tmp_path / 'det.yaml'
    recipe.write_text('eval_interval: 2\n')
    with pytest.raises(ValueError, match="config key 'eval_interval' in '.*det.yaml' was renamed: it is now "
                                         "eval_every_epochs"):
        detection.load_config(str(recipe))
    recipe.write_text('warmup_ratio: 0.01\niters: 20\n')
    cfg = segmentation.load_config(str(recipe))
    assert cfg.warmup_factor == 0.01 and cfg.max_iters == 20
    assert "config key 'iters' in" in capsys.readouterr().err


def test_renamed_flags(capsys):
    from stepsnet.cli import build_parser
    for command, flag, message in (
            ('train-det', '--eval-interval', 'argument --eval-interval was renamed: it is now --eval-every-epochs'),
            ('train-lm', '--beta2', 'argument --beta2 was renamed: it is now --opt-betas (its value 2)')):
        with pytest.raises(SystemExit):
            build_parser(command).parse_args([command, flag, '2'])
        assert message in capsys.readouterr().err
    args = build_parser('train-seg').parse_args(['train-seg', '--iters', '5'])  # kept as a second name
    assert args.max_iters == 5


def test_recipes_keep_their_seeds():
    """The recipes that trained with the earlier defaults (42, 1337) name them, so they train as before."""
    import glob
    import os

    from stepsnet.config import classification, lm
    root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'configs')
    assert {classification.load_config(p).seed for p in glob.glob(os.path.join(root, 'cls', '*.yaml'))} == {42}
    assert {lm.load_config(p).seed for p in glob.glob(os.path.join(root, 'lm', '*.yaml'))} == {1337}


# a value of a numeric field that makes no sense, per task, and the one line that refuses it
NONSENSE = [
    ('cls', 'epochs', 0, 'epochs must be >= 1, got 0'),
    ('cls', 'batch_size', -1, 'batch_size must be >= 1, got -1'),
    ('cls', 'lr', 0.0, 'lr must be > 0, got 0.0'),
    ('cls', 'lr_base', -1e-3, 'lr_base must be > 0, got -0.001'),
    ('cls', 'workers', -1, 'workers must be >= 0, got -1'),
    ('cls', 'weight_decay', -0.05, 'weight_decay must be >= 0 (0: none), got -0.05'),
    ('cls', 'warmup_epochs', -1.0, 'warmup_epochs must be >= 0 (0: none), got -1.0'),
    ('cls', 'min_lr', -1e-5, 'min_lr must be >= 0 (0: none), got -1e-05'),
    ('cls', 'drop_rate', 1.0, 'drop_rate must be in [0, 1), got 1.0'),
    ('cls', 'smoothing', -0.1, 'smoothing must be in [0, 1), got -0.1'),
    ('cls', 'mixup_prob', 1.5, 'mixup_prob must be a probability in [0, 1], got 1.5'),
    ('cls', 'crop_pct', 0.0, 'crop_pct must be in (0, 1] (a share of the image), got 0.0'),
    ('cls', 'clip_grad', -1.0, 'clip_grad must be >= 0 (0: none), got -1.0'),
    ('cls', 'model_ema_decay', 1.0, 'model_ema_decay must be in [0, 1), got 1.0'),
    ('cls', 'lr_base_size', 0, 'lr_base_size must be >= 1, got 0'),
    ('cls', 'threads', 0, 'threads must be >= 1 (or unset), got 0'),
    ('lm', 'lr', -2e-3, 'lr must be > 0, got -0.002'),
    ('lm', 'lr', float('inf'), 'lr must be > 0, got inf'),
    ('lm', 'max_iters', -5, 'max_iters must be >= 0, got -5'),
    ('lm', 'warmup_iters', -1, 'warmup_iters must be >= 0, got -1'),
    ('lm', 'weight_decay', -0.1, 'weight_decay must be >= 0 (0: none), got -0.1'),
    ('lm', 'min_lr', -1.0, 'min_lr must be >= 0 (0: none), got -1.0'),
    ('lm', 'peak_flops', 0.0, 'peak_flops must be > 0, got 0.0'),
    ('det', 'epochs', -1, 'epochs must be >= 1, got -1'),
    ('det', 'lr', 0.0, 'lr must be > 0, got 0.0'),
    ('det', 'workers', -2, 'workers must be >= 0, got -2'),
    ('det', 'momentum', -0.9, 'momentum must be >= 0 (0: none), got -0.9'),
    ('det', 'lr_gamma', 0.0, 'lr_gamma must be in (0, 1] (a factor of lr), got 0.0'),
    ('det', 'box_head_dim', 0, 'box_head_dim must be >= 1, got 0'),
    ('seg', 'max_iters', 0, 'max_iters must be >= 1, got 0'),
    ('seg', 'batch_size', 0, 'batch_size must be >= 1, got 0'),
    ('seg', 'power', 0.0, 'power must be > 0, got 0.0'),
    ('seg', 'aux_weight', -0.4, 'aux_weight must be >= 0 (0: none), got -0.4'),
    ('seg', 'dropout', 1.0, 'dropout must be in [0, 1), got 1.0'),
]


@pytest.mark.parametrize('task,field,value,message', NONSENSE, ids=lambda v: str(v))
def test_numeric_fields_refuse_values_that_make_no_sense(task, field, value, message):
    from stepsnet.config import classification, detection, lm, segmentation
    load = {'cls': classification, 'lm': lm, 'det': detection, 'seg': segmentation}[task].load_config
    with pytest.raises(ValueError) as e:
        load(None, **{field: value})
    assert str(e.value) == message


def test_workers_are_capped_at_the_cores_and_the_header_says_so(monkeypatch):
    from stepsnet.config import classification
    from stepsnet.utils import machine
    assert machine.cap_workers(10, cores=2, processes=1) == (
        2, "2 data-loader workers (the recipe's 10, capped at this machine's 2 cores)")
    assert machine.cap_workers(1, cores=2, processes=1) == (1, '')
    assert machine.cap_workers(0, cores=1, processes=1) == (0, '')
    assert machine.cap_workers(8, cores=8, processes=4) == (
        2, "2 data-loader workers (the recipe's 8, capped at this machine's 8 cores shared by 4 processes)")
    assert machine.available_cores() >= 1
    monkeypatch.setattr(machine.os, 'sched_getaffinity', lambda pid: {0, 1}, raising=False)
    monkeypatch.delenv('LOCAL_WORLD_SIZE', raising=False)
    cfg = classification.load_config('configs/cls/deit_small_imagenet.yaml')
    assert cfg.workers == 2 and cfg.workers_note == "2 data-loader workers (the recipe's 10, capped at this " \
                                                    "machine's 2 cores)"
    small = classification.load_config('configs/cls/digits_cpu.yaml')
    assert small.workers == 1 and small.workers_note == ''


def test_plural():
    from stepsnet.utils.names import plural
    assert [plural(1, 'epoch'), plural(2, 'epoch'), plural(1.0, 'epoch'), plural(1.5, 'epoch'),
            plural(1, 'process', 'processes'), plural(3, 'process', 'processes')] == [
        '1 epoch', '2 epochs', '1 epoch', '1.5 epochs', '1 process', '3 processes']
