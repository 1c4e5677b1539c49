"""benchmarks/lm_sweep.py on a tiny sweep: runs shared between cells train once, the sanity cell is exactly 0, the
report and CSV are written, and a second call trains nothing."""
import csv
import importlib.util
import json
import pathlib
import sys

import pytest
from scipy import stats as st

from stepsnet.data.text import prepare_text

ROOT = pathlib.Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures('one_thread')


def _sweep_module():
    spec = importlib.util.spec_from_file_location('lm_sweep', ROOT / 'benchmarks' / 'lm_sweep.py')
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


TINY = """
config: {config}
seeds: [0, 1]
first_seeds: 1
models:
  res: {{model: gpt_tiny}}
  steps: {{model: steps_gpt_tiny}}
  one_step: {{model: steps_gpt_tiny, model_kwargs: {{num_steps: 1}}}}
  ctrl: {{model: gpt_tiny, model_kwargs: {{n_layer: 3}}}}
cells:
  - name: sanity
    roles: {{baseline: res, steps: one_step}}
    max_iters: 4
  - name: pair
    roles: {{baseline: res, steps: steps, control: ctrl}}
    max_iters: 4
  - name: learning rate
    roles: {{baseline: res, steps: steps}}
    max_iters: 4
    lr: [1.0e-3, 2.0e-3]
"""


def test_tiny_sweep(tmp_path, capsys):
    sweep = _sweep_module()
    data = tmp_path / 'data'
    prepare_text(str(data), max_bytes=100_000)
    config = tmp_path / 'c.yaml'
    config.write_text(f'data_dir: {data}\nblock_size: 32\nbatch_size: 4\nlr: 2.0e-3\nwarmup_iters: 1\n'
                      'eval_interval: 4\neval_iters: 1\nfinal_eval_windows: 8\nlog_interval: 2\n')
    (tmp_path / 's.yaml').write_text(TINY.format(config=config))
    out = tmp_path / 'out'
    loaded = sweep.load_sweep(str(tmp_path / 's.yaml'))
    runs = sweep.planned_runs(loaded)
    assert len(runs) == 2 * (4 + 2)  # res, steps, one_step, ctrl at lr 2e-3 and res, steps at 1e-3, for 2 seeds
    assert [r.seed for r in runs[:6]] == [0] * 6  # the first seed of every main cell comes first
    assert sweep.main(['--sweep', str(tmp_path / 's.yaml'), '--out', str(out), '--jobs', '1']) == 0
    report = (out / 'sweep.md').read_text()
    assert '| sanity | 0.002 | 4 |' in report and '+0.000000 ± 0.000000 (n=2)' in report
    assert 'each model at its own best rate' in report and 'steps at its best − baseline at its best' in report
    rows = {r['run']: float(r['val_loss']) for r in csv.DictReader(open(out / 'sweep.csv'))}
    vs_control = [rows[f'steps-i4-lr0.002/seed{s}'] - rows[f'ctrl-i4-lr0.002/seed{s}'] for s in (0, 1)]
    pair = next(line for line in report.splitlines() if line.startswith('| pair |'))
    assert pair.split('|')[-2].strip().startswith(f'{sum(vs_control) / 2:+.4f}')  # Steps − control, paired
    assert len((out / 'sweep.csv').read_text().strip().splitlines()) == 1 + len(runs)
    assert (out / 'sweep.png').stat().st_size > 1000
    # every difference tested, Holm across the report; the machine of the runs is named
    saved = json.loads((out / 'sweep.json').read_text())
    diffs = {(d['cell'], d['what']): d for d in saved['differences']}
    d = diffs[('pair', 'Steps − control')]
    assert d['values'] == pytest.approx(vs_control) and d['n'] == 2 and d['p_adj'] >= d['p']
    assert d['p'] == pytest.approx(st.ttest_rel([rows[f'steps-i4-lr0.002/seed{s}'] for s in (0, 1)],
                                                [rows[f'ctrl-i4-lr0.002/seed{s}'] for s in (0, 1)]).pvalue)
    assert diffs[('sanity', 'Steps − baseline')]['p'] == 1.0  # num_steps 1 is the residual model: exactly 0
    assert '**Tests.**' in report and 'Holm' in report and 'Machine: ' in report and 'standard errors' not in report
    assert len(saved['machines']) == 1 and saved['runs_without_machine'] == 0
    out_text = capsys.readouterr().out
    assert '12 runs: 0 done before (reused), 12 to train' in out_text and 'val loss (nats/token)' in out_text
    assert sweep.main(['--sweep', str(tmp_path / 's.yaml'), '--out', str(out), '--list']) == 0
    assert capsys.readouterr().out.count('done') == len(runs)
    # the report again from the CSV alone: the same files
    again = tmp_path / 'again'
    assert sweep.main(['--sweep', str(tmp_path / 's.yaml'), '--out', str(again), '--from-csv',
                       str(out / 'sweep.csv')]) == 0
    for name in ('sweep.md', 'sweep.csv', 'sweep.json'):
        assert (again / name).read_bytes() == (out / name).read_bytes(), name
    # a second call trains nothing
    assert sweep.main(['--sweep', str(tmp_path / 's.yaml'), '--out', str(out)]) == 0
    assert 'all 12 runs done before (reused); nothing to train' in capsys.readouterr().out
