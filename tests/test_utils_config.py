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
