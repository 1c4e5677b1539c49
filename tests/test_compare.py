"""The comparison harness: arms x seeds x points, paired statistics, resumable runs, reports and plots."""
import json
import math

import pytest

from stepsnet.cli import main
from stepsnet.compare import (
    PLAIN_TWIN_KWARGS,
    _role_colours,
    cls_comparison,
    depth_comparison,
    lm_comparison,
    paired_stats,
    run_comparison,
)
from stepsnet.data.text import prepare_text

pytestmark = pytest.mark.usefixtures('one_thread')
FAST_CLS = dict(batch_size=32, max_train_batches=2, workers=0, progress=False, warmup_epochs=0)


def test_paired_stats():
    s = paired_stats([1.0, 2.0, 3.0])
    assert s['mean'] == 2.0 and s['std'] == 1.0 and s['n'] == 3
    assert paired_stats([5.0])['std'] is None and paired_stats([])['mean'] is None


def test_every_arm_gets_its_own_colour():
    roles = ['baseline', 'steps_compute', 'steps_blocks', 'control']
    colours = _role_colours(roles)
    assert list(colours) == roles and len(set(colours.values())) == len(roles)
    assert _role_colours(['steps'])['steps'] == colours['steps_compute']  # the first Steps arm keeps one colour


def test_depth_comparison_pairs_and_report(tmp_path):
    comp = depth_comparison(depths=[4], width=80, heads=4, seeds=[0, 1], pairings=['compute', 'blocks'],
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
    assert 'Classification: test_steps_resnet against test_steps_resnet' in capsys.readouterr().out
    assert main(['compare', 'depth', '--depths', '3', '--out', str(tmp_path / 'd')]) == 2
    assert 'expected an even L' in capsys.readouterr().err
    assert main(['compare', 'cls', '--set', 'epoch=1', '--out', str(tmp_path / 'x')]) == 2
    assert "unknown config keys ['epoch']" in capsys.readouterr().err
    # a width the 3-step plan cannot split fails before any arm trains
    assert main(['compare', 'depth', '--depths', '4', '--width', '16', '--heads', '2',
                 '--out', str(tmp_path / 'w')]) == 2
    assert 'widths must be strictly increasing' in capsys.readouterr().err
    assert not (tmp_path / 'w').exists()


def test_gap_over_depth_is_paired_by_seed(tmp_path):
    """Two depths: the report gives (gap at the deep point) - (gap at the shallow point), seed by seed."""
    comp = depth_comparison(depths=[4, 8], width=80, heads=4, seeds=[0, 1, 2], out=str(tmp_path / 'd'), jobs=1)
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
    t = r['trend']['steps']
    assert t['values'] == [6.0 - 0.0, 6.0 - 1.0, 7.0 - 0.0] and t['mean'] == pytest.approx(6.0)
    report = (tmp_path / 'd' / 'report.md').read_text()
    assert 'Depth: (steps − baseline at 8 residual blocks) − (steps − baseline at 4 residual blocks) = +6.00' in report
