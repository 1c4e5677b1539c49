"""The README stays true: its parity table is what `stepsnet models` prints now, and its examples run."""
import pathlib
import re
import subprocess
import sys

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


def test_timm_example_runs():
    (code,) = python_blocks('Models')
    scope = {}
    exec(compile(code, 'README', 'exec'), scope)
    assert scope['model'].num_classes == 100


def test_quick_start_is_two_make_commands():
    block = README.split('## Quick start', 1)[1].split('```bash\n', 1)[1].split('```', 1)[0]
    commands = [line.split('#')[0].strip() for line in block.strip().splitlines()]
    assert commands == ['make run', 'make test']
    make = subprocess.run(['make', '-n', 'run', 'test'], cwd=ROOT, capture_output=True, text=True)
    assert make.returncode == 0, make.stderr
