"""The README stays true: its parity table is what `stepsnet models` prints now, and its examples run."""
import pathlib
import re
import subprocess
import sys

import torch

from stepsnet.analysis.complexity import format_table

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = (ROOT / 'README.md').read_text()
sys.path.insert(0, str(ROOT / 'scripts'))
from update_readme_table import replace_table  # noqa: E402


def test_parity_table_is_current(model_table):
    assert replace_table(README, format_table(model_table, 'md')) == README, \
        'README table is stale: run `python scripts/update_readme_table.py`'


def python_blocks(section: str):
    body = README.split(f'## {section}', 1)[1].split('\n## ', 1)[0]
    return re.findall(r'```python\n(.*?)```', body, flags=re.S)


def test_own_block_example_runs():
    (code,) = python_blocks('Applying Steps to your own block')
    scope = {}
    exec(compile(code, 'README', 'exec'), scope)
    assert scope['y'].shape == (2, 64, 16, 16)
    assert str(scope['plan']) == '32x4, 45x2, 64x2'


def test_timm_examples_run(tmp_path, monkeypatch, one_thread):
    """The Models section's blocks run in order, in one scope (later blocks use earlier imports)."""
    monkeypatch.chdir(tmp_path)  # the weights example writes weights/ where it runs
    scope = {}
    for code in python_blocks('Models'):
        exec(compile(code, 'README', 'exec'), scope)
    assert scope['twin'].pretrained_cfg['architecture'] == 'steps_resnet101'
    assert str(scope['twin'].plans['layer3']) == '64x6, 90x3, 128x3, 181x3, 256x19'
    assert isinstance(scope['scripted'], torch.jit.ScriptModule)
    assert scope['model'].num_classes == 10 and scope['data_config']['input_size'] == (3, 224, 224)
    assert sorted(p.name for p in (tmp_path / 'weights' / 'steps_resnet18').iterdir()) == [
        'config.json', 'model.safetensors']


def test_quick_start_is_two_make_commands():
    block = README.split('## Quick start', 1)[1].split('```bash\n', 1)[1].split('```', 1)[0]
    commands = [line.split('#')[0].strip() for line in block.strip().splitlines()]
    assert commands == ['make run', 'make test']
    make = subprocess.run(['make', '-n', 'run', 'test'], cwd=ROOT, capture_output=True, text=True)
    assert make.returncode == 0, make.stderr


def test_citation_file_is_valid_cff():
    """CITATION.cff has what the Citation File Format 1.2.0 requires, for the software and its preferred citation."""
    import yaml
    cff = yaml.safe_load((ROOT / 'CITATION.cff').read_text(encoding='utf-8'))
    assert cff['cff-version'] == '1.2.0' and cff['message'] and cff['title']
    for entry in (cff, cff['preferred-citation']):
        assert entry['authors'] and all(a.get('name') or a.get('family-names') for a in entry['authors'])
    ref = cff['preferred-citation']
    assert ref['type'] == 'article' and ref['title'] == 'Step by Step Network' and ref['year'] == 2025
    assert 'arXiv:2511.14329' in [i['value'] for i in ref['identifiers']]
    assert '(CITATION.cff)' in (ROOT / 'README.md').read_text(encoding='utf-8')


def test_every_relative_link_of_the_readme_resolves():
    text = (ROOT / 'README.md').read_text(encoding='utf-8')
    links = [m for m in re.findall(r'\]\(([^)\s]+)\)', text) if not m.startswith(('http://', 'https://', '#'))]
    assert links
    missing = [link for link in links if not (ROOT / link.split('#')[0]).exists()]
    assert not missing, missing
