"""benchmarks/gpu.sh in its tiny CPU setting: every cell measured or recorded, CSV and markdown written."""
import os
import shutil
import subprocess
import sys

import pytest

from stepsnet.analysis.speed import read_csv

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.skipif(shutil.which('bash') is None or shutil.which('timeout') is None,
                                reason='needs bash and timeout')


def _run(tmp_path, **env):
    wrapper = tmp_path / 'stepsnet'
    code = 'import sys; from stepsnet.cli import main; sys.exit(main(sys.argv[1:]))'
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -c "{code}" "$@"\n')
    wrapper.chmod(0o755)
    full = dict(os.environ, TINY='1', OUT=str(tmp_path / 'out'), STEPSNET=str(wrapper), PYTHON=sys.executable,
                PYTHONPATH=REPO + os.pathsep + os.environ.get('PYTHONPATH', ''), **env)
    return subprocess.run(['bash', os.path.join(REPO, 'benchmarks', 'gpu.sh')], env=full, capture_output=True,
                          text=True, timeout=600)


def test_gpu_script_tiny(tmp_path):
    # one image pair and the LM pair, compiled by dynamo alone (the script's default, aot_eager, takes longer)
    proc = _run(tmp_path, BACKEND='eager', CLS_PAIRS='test_resnet,test_steps_resnet')
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = tmp_path / 'out'
    for task, rate in (('cls', 'samples_per_sec'), ('lm', 'tokens_per_sec')):
        rows = read_csv(str(out / f'gpu_tiny_{task}.csv'))
        assert [(r['role'], r['compile']) for r in rows] == [('baseline', 'none'), ('steps', 'none'),
                                                             ('baseline', 'eager'), ('steps', 'eager')]
        assert [r['compile_scope'] for r in rows] == ['', '', 'blocks', 'blocks']  # regional compilation
        for r in rows:
            assert r['dtype'] == 'bfloat16' and r['device'] == 'cpu' and r['train_batch_size'] == 2
            for m in ('infer', 'train'):
                assert r[f'{m}_{rate}'] > 0 and r[f'{m}_warmup_s'] >= 0 and r[f'{m}_peak_mem_mb'] is not None
        md = (out / f'gpu_tiny_{task}.md').read_text()
        assert md.startswith('| pair | batch | compile |') and 'bfloat16' in md
    assert 'done in' in proc.stdout


def test_gpu_script_without_time_left_writes_nothing(tmp_path):
    proc = _run(tmp_path, BUDGET='0')
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert 'no time left for lm, compile off' in proc.stdout and 'gpu_tiny_cls_on.csv (not measured)' in proc.stdout
    assert not (tmp_path / 'out' / 'gpu_tiny_cls.csv').exists()


def test_merging_loads_no_torch(tmp_path):
    """The merge step reads and writes tables only: it starts in a fraction of a second, without torch or timm."""
    code = ('import runpy, sys; sys.argv = ["merge_results.py", sys.argv[1], sys.argv[2]]; '
            'runpy.run_path("benchmarks/merge_results.py", run_name="__main__"); '
            'print(sorted(m for m in ("torch", "timm") if m in sys.modules))')
    proc = subprocess.run([sys.executable, '-c', code, str(tmp_path / 'merged'), str(tmp_path / 'missing.csv')],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [f'no results in {tmp_path / "missing.csv"} (not measured)',
                                        f'nothing to merge into {tmp_path / "merged"}', '[]']
