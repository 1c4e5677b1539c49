"""docs/models.md: its examples of twins, weights and TorchScript run as written."""
import pathlib
import re

import pytest
import torch

DOC = (pathlib.Path(__file__).resolve().parents[1] / 'docs' / 'models.md').read_text()


def python_blocks(section: str):
    body = DOC.split(f'## {section}\n', 1)[1].split('\n## ', 1)[0]
    return re.findall(r'```python\n(.*?)```', body, flags=re.S)


def run(section, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    scope = {}
    for code in python_blocks(section):
        exec(compile(code, 'docs/models.md', 'exec'), scope)
    return scope


def test_twin_example(tmp_path, monkeypatch, one_thread):
    scope = run('Steps twins of any timm model', tmp_path, monkeypatch)
    assert str(scope['twin'].plans['layer3']) == '64x6, 90x3, 128x3, 181x3, 256x19'
    assert str(scope['deit3'].plan) == '192/H3x6, 272/H4x3, 384/H6x9'


def test_weights_example(tmp_path, monkeypatch, one_thread):
    scope = run("Weights in timm's layout", tmp_path, monkeypatch)
    assert scope['model'].num_classes == 10 and not scope['model'].training
    assert scope['data_config']['input_size'] == (3, 224, 224)
    assert scope['transform'] is not None


def test_torchscript_example(tmp_path, monkeypatch, one_thread):
    scope = run('TorchScript', tmp_path, monkeypatch)
    loaded = torch.jit.load(str(tmp_path / 'steps_swin_tiny.pt'))
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad(), torch.jit.optimized_execution(False):  # skip the profiling runs (seconds on a CPU)
        torch.testing.assert_close(loaded(x), scope['model'](x))


@pytest.mark.parametrize('section', ['Steps twins of any timm model', "Weights in timm's layout", 'TorchScript'])
def test_sections_have_examples(section):
    assert python_blocks(section)
