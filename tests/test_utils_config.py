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
