"""`stepsnet models` from the command line."""
import csv
import io

import pytest

from stepsnet.cli import main


def test_models_csv(capsys):
    assert main(['models', '--format', 'csv', 'steps_resnet18']) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r['name'] for r in rows] == ['resnet18', 'steps_resnet18']
    steps = rows[1]
    assert steps['baseline'] == 'resnet18'
    assert (steps['blocks'], steps['layers']) == ('18', '38')
    assert float(steps['params_m']) == pytest.approx(11.69, abs=0.01)
    assert rows[0]['paper_gflops'] == '1.8'


def test_models_markdown_has_relative_columns(capsys):
    assert main(['models', 'deit_tiny_patch16_224']) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].endswith('| params_vs_baseline | gflops_vs_paper |')
    assert '| steps_deit_tiny_patch16_224 | deit_tiny_patch16_224 | 24 | 122 |' in out


def test_models_unknown_name_is_an_error(capsys):
    assert main(['models', 'no_such_model']) == 2
    assert 'no_such_model' in capsys.readouterr().err


def test_models_coverage_lists_a_familys_configurations(capsys):
    """`stepsnet models --coverage FAMILY` prints the coverage rows of that family (as docs/models.md has them)."""
    from stepsnet.models.generic_families import GENERIC_FAMILIES, family_configs
    assert main(['models', '--coverage', 'Visformer']) == 0
    out = capsys.readouterr().out
    family = next(f for f in GENERIC_FAMILIES if f.name == 'Visformer')
    assert all(f'| Visformer | `{name}` |' in out for name in family_configs(family))
    assert main(['models', '--coverage', 'NoSuchFamily']) == 2
    assert 'no generic family named NoSuchFamily' in capsys.readouterr().err
