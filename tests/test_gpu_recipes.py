"""benchmarks/gpu_recipes.sh in its tiny CPU setting: the dry runs recorded, a failure or a spent budget recorded."""
import importlib.util
import json
import os
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.skipif(shutil.which('bash') is None or shutil.which('timeout') is None,
                                reason='needs bash and timeout')


def _run(tmp_path, **env):
    full = dict(os.environ, TINY='1', OUT=str(tmp_path / 'out'), PYTHON=sys.executable, THREADS='1',
                PYTHONPATH=REPO + os.pathsep + os.environ.get('PYTHONPATH', ''), **env)
    proc = subprocess.run(['bash', os.path.join(REPO, 'benchmarks', 'gpu_recipes.sh')], env=full, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc, json.loads((tmp_path / 'out' / 'gpu_recipes_tiny.json').read_text())


def test_gpu_recipes_tiny(tmp_path):
    proc, data = _run(tmp_path, RECIPES='configs/lm/small.yaml')
    [r] = data['rows']
    assert (r['recipe'], r['compile'], r['status']) == ('configs/lm/small.yaml', False, 'ok'), r
    # on a CPU the step runs in float32 (the dry run says so); the recipe's bfloat16 is recorded beside it
    assert r['device'] == 'cpu' and r['amp'] == '' and r['recipe_amp'] == 'bfloat16'
    assert r['steps'] == 1 and r['items_per_step'] == 64
    assert r['params_changed'] and r['device_hours'] > 0 and r['peak_memory_bytes'] > 0
    assert r['params'] > 29e6  # the recipe's model (gpt_small with GPT-2's vocabulary), not a small stand-in
    md = (tmp_path / 'out' / 'gpu_recipes_tiny.md').read_text()
    assert '| configs/lm/small.yaml | gpt_small | no | 1 |' in md
    assert '1 of 1 dry runs ok' in proc.stdout


def test_gpu_recipes_records_failures_and_the_spent_budget(tmp_path, capsys):
    """The driver in this process: a recipe that fails is recorded with its error, a spent budget skips the rest."""
    spec = importlib.util.spec_from_file_location('gpu_recipes', os.path.join(REPO, 'benchmarks', 'gpu_recipes.py'))
    driver = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(driver)
    bad = tmp_path / 'bad.yaml'
    bad.write_text('task: lm\nmodel: gpt_nonexistent\ndata_dir: runs/data/none\n')
    out = tmp_path / 'out'
    assert driver.main(['--tiny', '--recipes', str(bad), '--steps', '1', '--compile', 'off', '--out', str(out)]) == 0
    row = json.loads((out / 'gpu_recipes_tiny.json').read_text())['rows'][0]
    assert row['status'] == 'failed' and 'gpt_nonexistent' in row['error']
    assert driver.main(['--tiny', '--recipes', 'configs/lm/small.yaml', '--compile', 'off', '--budget', '0',
                        '--out', str(out)]) == 0
    assert json.loads((out / 'gpu_recipes_tiny.json').read_text())['rows'] == [
        dict(recipe='configs/lm/small.yaml', task='lm', compile=False, status='skipped', error='time budget spent')]
    assert '0 of 1 dry runs ok' in capsys.readouterr().out
    assert '| configs/lm/small.yaml |  | no |  |' in (out / 'gpu_recipes_tiny.md').read_text()
