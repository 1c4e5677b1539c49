"""The README stays a true front door: short, indexed, its examples run, its links (and those of docs/) resolve; and
the parity table of docs/models.md is what `stepsnet models` prints now."""
import pathlib
import re
import subprocess

import pytest
import torch

from stepsnet.analysis.complexity import format_table
from stepsnet.utils.docblocks import markers, replace_block

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = (ROOT / 'README.md').read_text(encoding='utf-8')
README_MAX_BYTES = 12_500
DOCS = sorted(p.name for p in (ROOT / 'docs').glob('*.md'))


def test_parity_table_is_current(model_table):
    doc = (ROOT / 'docs' / 'models.md').read_text(encoding='utf-8')
    assert replace_block(doc, format_table(model_table, 'md'), *markers('models-table')) == doc, \
        'docs/models.md parity table is stale: run `python scripts/update_parity_table.py`'


def test_readme_is_a_front_door():
    size = len(README.encode('utf-8'))
    assert size <= README_MAX_BYTES, f'README.md is {size} bytes; move detail into docs/ (at most {README_MAX_BYTES})'
    index = README.split('## Documentation', 1)[1].split('\n## ', 1)[0]
    assert [p for p in DOCS if f'(docs/{p})' not in index] == [], 'a page of docs/ is missing from the README index'


def python_blocks(section: str):
    body = README.split(f'## {section}', 1)[1].split('\n## ', 1)[0]
    return re.findall(r'```python\n(.*?)```', body, flags=re.S)


def test_own_block_example_runs():
    code = next(c for c in python_blocks('Use it') if 'class MyBlock' in c)
    scope = {}
    exec(compile(code, 'README', 'exec'), scope)
    assert scope['y'].shape == (2, 64, 16, 16)
    assert str(scope['plan']) == '32x4, 45x2, 64x2'


def test_use_it_examples_run(tmp_path, monkeypatch, one_thread):
    """The 'Use it' section's blocks run in order, in one scope (later blocks use earlier imports)."""
    monkeypatch.chdir(tmp_path)  # the weights example writes weights/ where it runs
    scope = {}
    for code in python_blocks('Use it'):
        exec(compile(code, 'README', 'exec'), scope)
    assert scope['backbone'].feature_info.reduction() == [16, 16, 16]
    assert isinstance(scope['scripted'], torch.jit.ScriptModule)
    assert scope['twin'].pretrained_cfg['architecture'] == 'steps_resnet101'
    assert str(scope['twin'].plans['layer3']) == '64x6, 90x3, 128x3, 181x3, 256x19'
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
    """CITATION.cff passes the Citation File Format 1.2.0 schema (cffconvert's own validation, offline), and its
    preferred citation is the paper."""
    import subprocess
    import sys

    import yaml
    pytest.importorskip('cffconvert')
    done = subprocess.run([sys.executable, '-c', 'from cffconvert.cli.cli import cli; cli()', '--validate', '-i',
                           str(ROOT / 'CITATION.cff')], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    cff = yaml.safe_load((ROOT / 'CITATION.cff').read_text(encoding='utf-8'))
    assert cff['cff-version'] == '1.2.0' and cff['message'] and cff['title']
    for entry in (cff, cff['preferred-citation']):
        assert entry['authors'] and all(a.get('name') or a.get('family-names') for a in entry['authors'])
    ref = cff['preferred-citation']
    assert ref['type'] == 'article' and ref['title'] == 'Step by Step Network' and ref['year'] == 2025
    assert 'arXiv:2511.14329' in [i['value'] for i in ref['identifiers']]
    assert '(CITATION.cff)' in README


def anchors(text: str) -> set:
    """The anchors a markdown renderer gives the headings of ``text`` (GitHub's rule: lower case, punctuation other
    than hyphens and underscores dropped, spaces to hyphens)."""
    heads = re.findall(r'^#+ (.+)$', re.sub(r'```.*?```', '', text, flags=re.S), flags=re.M)
    return {re.sub(r'[^\w\- ]', '', h.strip().lower()).replace(' ', '-') for h in heads}


def test_anchor_rule():
    assert anchors('# The main job (`make run`)\n```\n# not a heading\n```\n## Steps-Swin') == {
        'the-main-job-make-run', 'steps-swin'}


@pytest.mark.parametrize('doc', ['README.md'] + [f'docs/{p}' for p in DOCS])
def test_every_relative_link_resolves(doc):
    """Every relative link of the README and of docs/ names a file that exists and, for a page, an anchor that one
    of its headings makes."""
    path = ROOT / doc
    text = re.sub(r'```.*?```', '', path.read_text(encoding='utf-8'), flags=re.S)
    links = [m for m in re.findall(r'\]\(([^)\s]+)\)', text) if not m.startswith(('http://', 'https://', 'mailto:'))]
    broken = []
    for link in links:
        target, _, anchor = link.partition('#')
        file = (path.parent / target) if target else path
        if not file.exists():
            broken.append(link)
        elif anchor and file.suffix == '.md' and anchor not in anchors(file.read_text(encoding='utf-8')):
            broken.append(link)
    assert not broken, f'{doc}: {broken}'
