"""The LM sweep (stepsnet.compare.lm_sweep, its report stepsnet.reports.lm_sweep_report, its command line
benchmarks/lm_sweep.py) on a tiny sweep: runs shared between cells train once, the sanity cell is exactly 0, the
report and CSV are written, and a second call trains nothing; the committed reports are what the command line writes
from their CSVs, from any folder. The sweep's statistics (stepsnet.reports.lm_sweep): one family, a shared difference
tested once, the best-rate comparison in it, the sanity cell outside, the same adjusted p in the sweep's own report
and in the docs' tables (scripts/render_results.py)."""
import csv
import importlib.util
import json
import pathlib
import subprocess
import sys

import pytest
import yaml
from scipy import stats as st

from stepsnet import stats
from stepsnet.compare import lm_sweep as sweep_lib
from stepsnet.compare import results_docs
from stepsnet.reports import lm_sweep as report
from stepsnet.reports import lm_sweep_report

ROOT = pathlib.Path(__file__).resolve().parents[1]
SWEEP_CSV = ROOT / 'docs' / 'figures' / 'lm' / 'sweep.csv'
SCRIPT = ROOT / 'benchmarks' / 'lm_sweep.py'


def _script():
    """benchmarks/lm_sweep.py as a module (its ``main``)."""
    spec = importlib.util.spec_from_file_location('lm_sweep_script', SCRIPT)
    mod = importlib.util.module_from_spec(spec)
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


@pytest.mark.usefixtures('one_thread')
def test_tiny_sweep(tmp_path, capsys):
    from stepsnet.data.text import prepare_text

    script = _script()
    data = tmp_path / 'data'
    prepare_text(str(data), max_bytes=100_000)
    config = tmp_path / 'c.yaml'
    config.write_text(f'data_dir: {data}\nblock_size: 32\nbatch_size: 4\nlr: 2.0e-3\nwarmup_iters: 1\n'
                      'eval_interval: 4\neval_iters: 1\nfinal_eval_windows: 8\nlog_interval: 2\n')
    (tmp_path / 's.yaml').write_text(TINY.format(config=config))
    out = tmp_path / 'out'
    loaded = sweep_lib.load_sweep(str(tmp_path / 's.yaml'))
    runs = sweep_lib.planned_runs(loaded)
    # a relative config path is read from the repository given as root, not from where the package is installed
    (tmp_path / 'rel.yaml').write_text(TINY.format(config='c.yaml'))
    assert sweep_lib.load_sweep(str(tmp_path / 'rel.yaml'), root=str(tmp_path))['config'] == str(config)
    assert len(runs) == 2 * (4 + 2)  # res, steps, one_step, ctrl at lr 2e-3 and res, steps at 1e-3, for 2 seeds
    assert [r.seed for r in runs[:6]] == [0] * 6  # the first seed of every main cell comes first
    assert script.main(['--sweep', str(tmp_path / 's.yaml'), '--out', str(out), '--jobs', '1']) == 0
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
    assert diffs[('sanity', 'Steps − baseline')]['family'] == 'sanity' and d['family'] == 'sweep'
    assert d['sign_flip']['p'] is not None and d['sign_flip']['p_adj'] >= d['sign_flip']['p']
    # the pair cell's Steps − baseline and the learning-rate cell's at 2e-3 are the same runs: one test, in both
    shared = [r for r in saved['differences'] if r['what'] == 'Steps − baseline' and r['also_in']]
    assert {'pair', 'learning rate, lr 0.002'} <= {r['place'] for r in shared}
    assert saved['statistics']['differences'] == len({(r['first_model'], r['second_model'], r['first_lr'],
                                                        r['second_lr'], r['max_iters']) for r in saved['differences']
                                                       if r['family'] == 'sweep' and r['p'] is not None})
    assert '**Tests.**' in report and 'Holm' in report and 'Machine: ' in report and 'standard errors' not in report
    assert len(saved['machines']) == 1 and saved['runs_without_machine'] == 0
    out_text = capsys.readouterr().out
    assert '12 runs: 0 done before (reused), 12 to train' in out_text and 'val loss (nats/token)' in out_text
    assert script.main(['--sweep', str(tmp_path / 's.yaml'), '--out', str(out), '--list']) == 0
    assert capsys.readouterr().out.count('done') == len(runs)
    # the report again from the CSV alone: the same files
    again = tmp_path / 'again'
    assert script.main(['--sweep', str(tmp_path / 's.yaml'), '--out', str(again), '--from-csv',
                       str(out / 'sweep.csv')]) == 0
    for name in ('sweep.md', 'sweep.csv', 'sweep.json'):
        assert (again / name).read_bytes() == (out / name).read_bytes(), name
    # a second call trains nothing
    assert script.main(['--sweep', str(tmp_path / 's.yaml'), '--out', str(out)]) == 0
    assert 'all 12 runs done before (reused); nothing to train' in capsys.readouterr().out


def _docs_sweep() -> report.Sweep:
    return results_docs.sweep_tests(ROOT)


def test_script_and_docs_agree_on_every_adjusted_p(tmp_path):
    """The sweep's own report, written from the committed CSV by the script run as a user runs it (here from a folder
    outside the repository), and the docs' table carry the same tests: every difference, both adjusted p, the
    verdict."""
    out = tmp_path / 'out'
    run = subprocess.run([sys.executable, str(SCRIPT), '--from-csv', str(SWEEP_CSV), '--out', 'out'],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    saved = json.loads((out / 'sweep.json').read_text())
    sw = _docs_sweep()
    shown = sw.shown()
    assert [(r['place'], r['what']) for r in saved['differences']] == [(place, d.what) for place, _, d in shown]
    for r, (place, _, d) in zip(saved['differences'], shown):
        assert r['p_adj'] == d.test.p_adj and r['sign_flip']['p_adj'] == d.sign_flip.p_adj, place
        assert r['p'] == d.test.p and r['sign_flip']['p'] == d.sign_flip.p and r['outcome'] == d.outcome, place
    assert saved['statistics']['differences'] == sw.tested == 14
    # the rendered docs table prints those numbers: t-test p, adjusted, sign-flip p, adjusted, in report order
    table = results_docs.render_lm_sweep(ROOT).split('| cell | lr | difference |', 1)[1].splitlines()[2:]
    rows = [line.split(' | ') for line in table if line.startswith('| ')]
    assert len(rows) == len(saved['differences'])
    for cells, r in zip(rows, saved['differences']):
        assert cells[5:9] == [stats.format_p(r['p']), stats.format_p(r['p_adj']), stats.format_p(r['sign_flip']['p']),
                              stats.format_p(r['sign_flip']['p_adj'])], cells
    # and the committed files are what the script writes now
    for name in ('sweep.md', 'sweep.json'):
        assert (out / name).read_text() == (ROOT / 'docs' / 'figures' / 'lm' / name).read_text(), name


def test_llama_report_is_what_the_script_writes(tmp_path):
    """The Llama pair's committed report is the script's, from the repository root, on the committed per-run CSV."""
    out = tmp_path / 'llama'
    run = subprocess.run([sys.executable, 'benchmarks/lm_sweep.py', '--sweep', 'benchmarks/llama_compare.yaml',
                          '--from-csv', 'docs/figures/lm/llama/runs.csv', '--out', str(out)],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    committed = (ROOT / 'docs' / 'figures' / 'lm' / 'llama' / 'report.md').read_text()
    assert (out / 'sweep.md').read_text() == committed and run.stdout == committed + '\n'
    assert (out / 'sweep.csv').read_bytes() == (ROOT / 'docs' / 'figures' / 'lm' / 'llama' / 'runs.csv').read_bytes()


def test_read_csv_keeps_the_planned_runs_and_names_a_wrong_file(tmp_path):
    sweep = sweep_lib.load_sweep(str(ROOT / 'benchmarks' / 'lm_sweep.yaml'))
    runs = sweep_lib.planned_runs(sweep)
    rows = lm_sweep_report.read_csv(str(SWEEP_CSV), runs[:3])
    assert set(rows) == set(runs[:3])  # the first runs of the main cells have all finished; no other run
    assert all(isinstance(r['val_loss'], float) and isinstance(r['seed'], int) for r in rows.values())
    assert not any(r.get('machine') for r in rows.values())  # the committed sweep.json beside it records none
    # a sweep.json beside the CSV that names one machine for every run gives each row that machine
    (tmp_path / 'sweep.csv').write_bytes(SWEEP_CSV.read_bytes())
    (tmp_path / 'sweep.json').write_text(json.dumps({'machines': [{'cpu': 'x'}], 'runs_without_machine': 0}))
    rows = lm_sweep_report.read_csv(str(tmp_path / 'sweep.csv'), runs[:3])
    assert [r['machine'] for r in rows.values()] == [{'cpu': 'x'}] * 3
    wrong = tmp_path / 'other.csv'
    wrong.write_text('model,loss\na,1.0\n')
    with pytest.raises(ValueError, match='no "run" column'):
        lm_sweep_report.read_csv(str(wrong), runs)
    bad = tmp_path / 'bad.csv'
    bad.write_text(','.join(lm_sweep_report.CSV_KEYS) + '\n' + runs[0].name + ',res,gpt,0,300,0.002' + ',' * 5
                   + 'lower,,,,,\n')
    with pytest.raises(ValueError, match='not a number'):
        lm_sweep_report.read_csv(str(bad), runs)


def test_shared_difference_is_one_test():
    """depth 8 and the learning-rate cell at 2e-3 are the same runs: one test, shown in both, counted once."""
    sw = _docs_sweep()
    depth8 = next(c for c in sw.cells if c.name == 'depth 8').differences[('steps', 'baseline')]
    lr2 = next(c for c in sw.cells if c.lr_varies and c.lr == 2e-3).differences[('steps', 'baseline')]
    assert depth8 is lr2 and sw.places[depth8.key] == ['depth 8', 'learning rate (depth 8), lr 0.002']
    assert sw.shared() == [depth8]
    tested = [d for _, _, d in sw.shown() if d.family == report.FAMILY and d.test.p is not None]
    assert len(tested) == sw.tested + 1 == 15  # shown 15 times, tested 14
    # Holm over the 14 distinct p, each test on its own
    family = [d for d in sw.family if d.test.p is not None]
    assert [d.test.p_adj for d in family] == stats.holm([d.test.p for d in family])
    assert [d.sign_flip.p_adj for d in family] == stats.holm([d.sign_flip.p for d in family])
    lr1 = next(c for c in sw.cells if c.lr_varies and c.lr == 1e-3).differences[('steps', 'baseline')]
    assert lr1.test.p_adj == pytest.approx(0.0446, abs=5e-5)  # 0.0501 when the shared runs counted twice


def test_best_rate_comparison_is_in_the_family_and_exploratory():
    sw = _docs_sweep()
    (best,) = sw.best_rates
    assert best.rates == {'baseline': 0.004, 'steps': 0.002}  # by mean loss over the three seeds
    d = best.difference
    assert d in sw.family and d.first_runs.lr == 0.002 and d.second_runs.lr == 0.004
    assert d.test.p_adj == stats.holm([x.test.p for x in sw.family])[sw.family.index(d)] > d.test.p
    rows = [r for r in sw.rows() if r['exploratory']]
    assert len(rows) == 1 and rows[0]['lr'] is None and rows[0]['rates'] == best.rates
    # the sanity cell is outside the family and has no adjusted p
    (sanity,) = sw.sanity
    assert sanity not in sw.family and sanity.test.p_adj is None and sanity.outcome == 'identical'


def _protocol(seeds, lr_grid=(1e-3, 2e-3)):
    return dict(config='unused', seeds=list(seeds), models=dict(res={'model': 'gpt'}, steps={'model': 'steps_gpt'},
                                                                one={'model': 'steps_gpt',
                                                                     'model_kwargs': {'num_steps': 1}}),
                cells=[dict(name='sanity', roles=dict(baseline='res', steps='one'), max_iters=10),
                       dict(name='pair', roles=dict(baseline='res', steps='steps'), max_iters=10),
                       dict(name='rate', roles=dict(baseline='res', steps='steps'), max_iters=10,
                            lr=list(lr_grid))])


def _losses(seeds, gap, best_res=2e-3, best_steps=2e-3):
    """Made-up losses: the Steps model ``gap`` above the residual one in every seed, each best at its given rate."""
    out = {}
    for lr in (1e-3, 2e-3):
        out[('res', 10, lr)] = {s: 2.0 + 0.01 * s + (0 if lr == best_res else 0.05) for s in seeds}
        out[('steps', 10, lr)] = {s: 2.0 + 0.01 * s + gap + 0.001 * (s % 3) + (0 if lr == best_steps else 0.05)
                                  for s in seeds}
        out[('one', 10, lr)] = dict(out[('res', 10, lr)])
    return out


def test_rule_both_tests_and_a_best_rate_that_is_a_grid_cell():
    """Both models best at the same rate: the best-rate comparison is that cell's runs, so it is the same test, once.
    With three seeds no verdict (the sign-flip p is at least 0.25); with eight both tests can call it."""
    for seeds, code in ((range(3), 'not distinguishable'), (range(8), 'behind')):
        sw = report.analyse(_protocol(seeds), _losses(seeds, 0.2), 2e-3)
        (best,) = sw.best_rates
        pair = sw.cells[1].differences[('steps', 'baseline')]
        assert best.difference is pair and sw.places[pair.key] == ['pair', 'rate, lr 0.002', best.label]
        assert sw.tested == 2  # the 1e-3 cell and the shared one; the sanity cell aside
        assert pair.test.p_adj < 0.05 and pair.outcome == code
        assert 'counted once' in report.method_note(sw) and 'exploratory' in report.method_note(sw)
        assert ('cannot go below' in report.method_note(sw)) == (len(seeds) == 3)
    # each model at its own best rate, a pair no cell has: a test of its own, in the family
    sw = report.analyse(_protocol(range(3)), _losses(range(3), 0.2, best_res=1e-3), 2e-3)
    assert sw.tested == 3 and sw.best_rates[0].difference in sw.family and len(sw.shared()) == 1


def test_reports_load_no_torch():
    code = 'import sys, stepsnet.reports.lm_sweep, stepsnet.reports.lm_sweep_report; print("torch" in sys.modules)'
    run = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stdout.strip() == 'False', run.stderr


def test_protocol_file_is_read_as_the_script_reads_it():
    """The docs read the protocol's config rate the way the script does (a cell without lr trains at it)."""
    protocol = yaml.safe_load((ROOT / 'benchmarks' / 'lm_sweep.yaml').read_text())
    sweep = sweep_lib.load_sweep(str(ROOT / 'benchmarks' / 'lm_sweep.yaml'))
    assert [report.cell_rates(c, sweep['config_lr']) for c in protocol['cells']] == [c['lrs'] for c in sweep['cells']]
