"""The comparison harness: arms x seeds x points, paired statistics, resumable runs, reports and plots."""
import io
import json
import math
import os

import pytest
from scipy import stats as st

from stepsnet.cli import build_parser, main
from stepsnet.compare import (
    PLAIN_TWIN_KWARGS,
    cls_comparison,
    depth_comparison,
    lm_comparison,
    mnist1d_comparison,
    render_report,
    run_comparison,
    spread,
)
from stepsnet.compare.harness import _Prefixed
from stepsnet.compare.report import _role_colours
from stepsnet.data.text import prepare_text
from stepsnet.stats import holm

pytestmark = pytest.mark.usefixtures('one_thread')
FAST_CLS = dict(batch_size=32, max_train_batches=2, workers=0, progress=False, warmup_epochs=0)


def test_spread():
    s = spread([1.0, 2.0, 3.0])
    assert s['mean'] == 2.0 and s['std'] == 1.0 and s['n'] == 3
    assert spread([5.0])['std'] is None and spread([])['mean'] is None


def test_every_arm_gets_its_own_colour():
    roles = ['baseline', 'steps_compute', 'steps_blocks', 'control']
    colours = _role_colours(roles)
    assert list(colours) == roles and len(set(colours.values())) == len(roles)
    assert _role_colours(['steps'])['steps'] == colours['steps_compute']  # the first Steps arm keeps one colour


def test_depth_comparison_pairs_and_report(tmp_path):
    comp = depth_comparison(blocks=[4], width=80, heads=4, seeds=[0, 1], pairings=['compute', 'blocks'],
                            overrides=dict(FAST_CLS, epochs=1), out=str(tmp_path / 'd'), jobs=1, threads=1)
    arms = {a.role: a for a in comp.points[0].arms}
    assert set(arms) == {'baseline', 'steps_compute', 'steps_blocks'}
    r = run_comparison(comp, progress=False)
    p = r['points'][0]
    base, twin = p['arms']['baseline'], p['arms']['steps_compute']
    assert base['blocks'] == 4 and twin['blocks'] == 8  # the Table 1 twin: twice the blocks ...
    assert p['arms']['steps_blocks']['blocks'] == 4
    assert abs(twin['params'] / base['params'] - 1) < 0.001  # ... the same parameters and FLOPs
    assert abs(twin['macs'] / base['macs'] - 1) < 0.01
    d = p['diffs']['steps_compute']
    assert d['n'] == 2 and d['mean'] == pytest.approx(
        sum(twin['per_seed'][s] - base['per_seed'][s] for s in (0, 1)) / 2)
    report = (tmp_path / 'd' / 'report.md').read_text()
    assert 'Fig. 1 in miniature' in report and 'docs/analyses.md' in report and 'paired' in report
    assert (tmp_path / 'd' / 'depth.png').stat().st_size > 1000 and (tmp_path / 'd' / 'curves.png').exists()
    # a second call trains nothing: every run has its result
    again = run_comparison(comp, progress=False)
    assert again['points'][0]['arms']['baseline']['per_seed'] == base['per_seed']


def test_cls_and_lm_comparisons(tmp_path):
    comp = cls_comparison(seeds=[0], overrides=dict(FAST_CLS, epochs=1), out=str(tmp_path / 'c'))
    assert comp.points[0].arms[0].overrides['model_kwargs'] == PLAIN_TWIN_KWARGS
    r = run_comparison(comp, progress=False)
    assert r['metric'] == 'val top-1 (%)' and r['higher_is_better']
    data = tmp_path / 'lmdata'
    prepare_text(str(data), max_bytes=200_000)
    comp = lm_comparison('gpt_tiny', 'steps_gpt_tiny', seeds=[0, 1], out=str(tmp_path / 'l'),
                         overrides=dict(data_dir=str(data), batch_size=4, block_size=32, max_iters=6, eval_iters=1,
                                        final_eval_windows=8, log_interval=1, progress=False))
    r = run_comparison(comp, progress=False)
    arms = r['points'][0]['arms']
    assert arms['baseline']['label'] == 'gpt_tiny' and arms['steps']['blocks'] == 4
    assert all(v < math.log(256) for v in arms['steps']['per_seed'].values())
    saved = json.loads((tmp_path / 'l' / 'results.json').read_text())
    assert saved['points'][0]['diffs']['steps']['n'] == 2
    assert 'language-modelling.md' in (tmp_path / 'l' / 'report.md').read_text()


def test_compare_command(tmp_path, capsys):
    assert main(['compare', 'cls', '--out', str(tmp_path / 'c'), '--seeds', '1', '--no-progress', '--set',
                 'epochs=1', 'max_train_batches=1', 'batch_size=32', 'workers=0', 'warmup_epochs=0']) == 0
    out = capsys.readouterr().out
    assert ('Classification: test_steps_resnet against test_steps_resnet as a plain residual network (one step per '
            'stage)') in out
    with pytest.raises(ValueError, match='the baseline and the Steps arm are the same model'):
        cls_comparison(baseline_kwargs={}, out=str(tmp_path / 's'))
    assert main(['compare', 'depth', '--blocks', '3', '--out', str(tmp_path / 'd')]) == 2
    assert 'expected an even L' in capsys.readouterr().err
    assert main(['compare', 'cls', '--set', 'epoch=1', '--out', str(tmp_path / 'x')]) == 2
    assert "unknown config keys ['epoch']" in capsys.readouterr().err
    # a width the 3-step plan cannot split fails before any arm trains
    assert main(['compare', 'depth', '--blocks', '4', '--width', '16', '--heads', '2',
                 '--out', str(tmp_path / 'w')]) == 2
    assert 'widths must be strictly increasing' in capsys.readouterr().err
    assert not (tmp_path / 'w').exists()
    # one grammar for compare depth and analyze pilot: --seeds is a count, --blocks the depths; old forms fail
    for argv, msg in [(['compare', '--depths', '4', '12'], 'is now --blocks'),
                      (['analyze', 'pilot', '--seeds', '0', '1', '2'], 'takes a count'),
                      (['compare', '--seeds', '0,1,2'], '--first-seed K'),
                      (['compare', '--seeds', '0'], 'at least one')]:
        with pytest.raises(SystemExit):
            main(argv + ['--out', str(tmp_path / 'x')])
        assert msg in capsys.readouterr().err
    assert not (tmp_path / 'x').exists()


def test_pilot_is_compare_depth(monkeypatch):
    """analyze pilot and compare depth parse into the same comparison (the pilot only changes defaults)."""
    import stepsnet.compare as harness  # the command imports the harness when it runs
    made = []
    monkeypatch.setattr(harness, 'run_comparison', lambda comp, **kw: made.append((comp, kw)))
    common = ['--blocks', '4', '8', '--pairing', 'compute', '--seeds', '2', '--first-seed', '3', '--out', 'o',
              '--report-only', '--set', 'epochs=2']
    assert main(['analyze', 'pilot'] + common) == 0 and main(['compare', 'depth'] + common) == 0
    (a, kw_a), (b, kw_b) = made
    assert a == b and kw_a == kw_b and kw_a['train'] is False
    assert list(a.seeds) == [3, 4] and [p.x for p in a.points] == [4, 8] and a.out == 'o'
    made.clear()
    assert main(['analyze', 'pilot']) == 0  # the pilot's defaults: 4 depths, both pairings, 3 seeds, 30 epochs
    assert main(['compare', 'depth']) == 0  # the digits depth comparison: 4 and 12 blocks, 3 seeds, 10 epochs
    comp, depth = made[0][0], made[1][0]
    assert [p.x for p in comp.points] == [4, 8, 16, 32] and list(comp.seeds) == [0, 1, 2]
    assert comp.config.epochs == 30 and depth.config.epochs == 10
    assert [p.x for p in depth.points] == [4, 12] and list(depth.seeds) == [0, 1, 2]
    assert {a.role for a in comp.points[0].arms} == {'baseline', 'steps_compute', 'steps_blocks'}


def test_worker_lines_carry_their_run():
    buf = io.StringIO()
    w = _Prefixed(buf, '[4 residual blocks / seed 1] ')
    w.write('epoch 1/3 val loss 0.5\nepoch 2')
    w.write('/3 val loss 0.4\r')
    w.flush()
    assert buf.getvalue().splitlines() == ['[4 residual blocks / seed 1] epoch 1/3 val loss 0.5',
                                           '[4 residual blocks / seed 1] epoch 2/3 val loss 0.4']


def test_gap_over_depth_is_paired_by_seed(tmp_path, capsys):
    """Two depths: the report gives (gap at the deep point) - (gap at the shallow point), seed by seed."""
    comp = depth_comparison(blocks=[4, 8], width=80, heads=4, seeds=[0, 1, 2], out=str(tmp_path / 'd'), jobs=1)
    fake = {('4_residual_blocks', 'baseline'): [90, 91, 92], ('4_residual_blocks', 'steps'): [90, 92, 92],
            ('8_residual_blocks', 'baseline'): [80, 82, 81], ('8_residual_blocks', 'steps'): [86, 88, 88]}
    for (point, role), values in fake.items():
        for seed, v in enumerate(values):
            d = tmp_path / 'd' / point / role / f'seed{seed}'
            d.mkdir(parents=True)
            (d / 'result.json').write_text(json.dumps(dict(
                metric=v, train_metric=v, loss=1.0, seen=1, train_time=1.0, curve=[[1, v]], params=1, macs=1,
                blocks=4, layers=22, plan='')))
    r = run_comparison(comp, progress=False)  # every run has a result: nothing trains
    assert 'all 12 runs done before (reused); nothing to train' in capsys.readouterr().out
    t = r['trend']['steps']
    assert t['values'] == [6.0 - 0.0, 6.0 - 1.0, 7.0 - 0.0] and t['mean'] == pytest.approx(6.0)
    # one Holm family over the 4 point differences and the change with depth; each carries its test
    ref = st.ttest_rel([86, 88, 88], [80, 82, 81])
    d = r['points'][1]['diffs']['steps']
    assert d['p'] == pytest.approx(ref.pvalue) and d['same_sign'] == 3 and d['n'] == 3
    assert r['statistics']['differences'] == 5
    assert d['p_adj'] == pytest.approx(holm([x['p'] for x in _all(r)])[2])  # point 0: 2 diffs, then this
    # an exploratory report calls a difference only where the sign-flip test agrees: with 3 seeds it cannot
    assert d['p_adj'] < 0.05 and d['sign_flip']['p'] == 0.25 and d['sign_flip']['exact']
    assert d['outcome'] == 'not distinguishable' and d['family'] == 'report'
    assert r['points'][0]['diffs']['steps']['verdict'].startswith('not distinguishable with 3 seeds (95% CI ')
    assert r['trained'] == 0 and r['reused'] == 12 and r['train_time_s'] == 12.0
    assert r['machines'] == [] and r['runs_without_machine'] == 12
    report = (tmp_path / 'd' / 'report.md').read_text()
    assert ('| change with depth | (steps − baseline at 8 residual blocks) − (at 4 residual blocks) | report | '
            '+6.00 ± 1.00 | ' in report)
    assert report.startswith('# ') and '**Exploratory.**' in report and 'sign-flip' in report
    assert 'Holm' in report and 'Machine not recorded' in report and 'not across CPUs' in report
    assert 'standard errors' not in report
    assert 'This invocation trained 0 runs and reused 12' in report


def _all(r):
    return [d for p in r['points'] for d in p['diffs'].values()] + list(r['trend'].values())


def test_render_report_from_an_old_results_file(tmp_path):
    """A results.json written before the statistics: rendered again from its per-seed values alone."""
    base = {'0': 97.0, '1': 97.5, '2': 98.0}
    steps = {'0': 97.0, '1': 96.5, '2': 96.9}
    arm = dict(label='a', overrides={}, params=1, macs=1, blocks=4, layers=22, plan='', seen=1, train_time=2.0,
               capped=[])
    old = dict(title='T', task='cls', metric='val top-1 (%)', higher_is_better=True, seeds=[0, 1, 2], context='',
               config={}, wall_time_s=0.0, torch='x', threads=1, jobs=1, points=[dict(
                   name='4 residual blocks', x=4, arms=dict(
                       baseline=dict(arm, per_seed=base, stats=spread(list(base.values())),
                                     train_stats=spread([99.0, 99.0, 99.0])),
                       steps=dict(arm, per_seed=steps, stats=spread(list(steps.values())),
                                  train_stats=spread([99.0, 99.5, 99.0]))),
                   diffs=dict(steps=dict(mean=-0.7, std=0.1, n=3, values=[0.0, -1.0, -1.1],
                                         per_seed={'0': 0.0, '1': -1.0, '2': -1.1}),
                              steps_train=dict(mean=0.0, std=0.0, n=3, values=[0.0, 0.5, 0.0])))])
    (tmp_path / 'results.json').write_text(json.dumps(old))
    r = render_report(str(tmp_path))
    d = r['points'][0]['diffs']['steps']
    assert d['p'] == pytest.approx(st.ttest_rel([97.0, 96.5, 96.9], [97.0, 97.5, 98.0]).pvalue)
    assert r['points'][0]['diffs']['steps_train']['per_seed'] == {'0': 0.0, '1': 0.5, '2': 0.0}
    assert r['train_time_s'] == 12.0 and r['runs_without_machine'] == 6
    report = (tmp_path / 'report.md').read_text()
    assert 'Machine not recorded' in report and 'not distinguishable with 3 seeds' in report
    assert not (tmp_path / 'curves.png').exists()  # the old file has no curves: the plot is left alone
    assert (tmp_path / 'depth.png').exists()
    saved = json.loads((tmp_path / 'results.json').read_text())
    assert saved['statistics']['differences'] == 2 and 'p_adj' in saved['points'][0]['diffs']['steps']


def test_a_run_folder_holds_one_results_file(tmp_path):
    """The harness adds what it measured to the engine's results.json of each run, and reads the two as one."""
    from stepsnet.compare import read_result
    comp = cls_comparison(seeds=[0], overrides=dict(FAST_CLS, epochs=1), out=str(tmp_path / 'c'))
    r = run_comparison(comp, progress=False)
    run = tmp_path / 'c' / 'digits' / 'steps' / 'seed0'
    assert sorted(p.name for p in run.iterdir() if p.name.endswith('.json')) == ['config.json', 'results.json']
    saved = json.loads((run / 'results.json').read_text())
    assert saved['kind'] == 'stepsnet-cls' and saved['items_seen'] == 64  # the engine's keys, and the harness's
    assert set(saved['comparison']) >= {'train_metric', 'curve', 'macs', 'blocks', 'plan', 'machine', 'commit'}
    result = read_result(str(run))
    assert result['metric'] == saved['final']['top1'] == r['points'][0]['arms']['steps']['per_seed'][0]
    assert result['seen'] == 64 and result['train_time'] == saved['train_time_s'] and result['params'] > 0
    assert read_result(str(tmp_path / 'c' / 'none')) is None


def test_the_main_job_is_the_mnist1d_comparison(tmp_path, monkeypatch, capsys):
    comp = mnist1d_comparison()
    assert comp.out == os.path.join('runs', 'compare') and list(comp.seeds) == [0, 1, 2] and comp.jobs == 2
    assert comp.config.dataset == 'mnist1d' and [p.x for p in comp.points] == [8, 16]
    assert [[a.overrides['model'] for a in p.arms] for p in comp.points] == [
        ['mnist1d_resnet', 'mnist1d_steps_resnet'], ['mnist1d_resnet34', 'mnist1d_steps_resnet34']]
    with pytest.raises(ValueError, match='ResNet-18 and ResNet-34 layouts'):
        mnist1d_comparison(blocks=[8, 12])
    assert build_parser().parse_args(['compare']).task == 'mnist1d'  # `make run` is `stepsnet compare`
    assert main(['compare', '--width', '48', '--out', str(tmp_path / 'x')]) == 2
    assert '--width applies to `stepsnet compare depth` only' in capsys.readouterr().err
    monkeypatch.setenv('STEPSNET_CACHE', str(tmp_path / 'cache'))
    assert main(['compare', '--blocks', '8', '--seeds', '1', '--no-progress', '--out', str(tmp_path / 'm'), '--set',
                 'epochs=1', 'max_train_batches=2']) == 0
    r = json.loads((tmp_path / 'm' / 'results.json').read_text())
    arms = r['points'][0]['arms']
    assert arms['baseline']['blocks'] == 8 and arms['steps']['blocks'] == 18
    assert abs(arms['steps']['params'] / arms['baseline']['params'] - 1) < 0.005
    assert abs(arms['steps']['macs'] / arms['baseline']['macs'] - 1) < 0.01
