"""scripts/keep_runs.py: the finished runs of a comparison kept without checkpoints, and reused from the copy."""
import json
import os
import sys

from stepsnet.compare import read_result
from stepsnet.models.factory import CLS_KIND

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'scripts'))
from keep_runs import keep_runs  # noqa: E402


def _run(folder, finished=True):
    os.makedirs(folder)
    results = dict(kind=CLS_KIND, final=dict(top1=97.5), items_seen=10, train_time_s=1.0, steps=2, stopped_early=False)
    if finished:  # the harness's part: what makes the run finished for a comparison
        results['comparison'] = dict(train_metric=99.0, curve=[], macs=1, blocks=4, layers=22, plan='')
    with open(os.path.join(folder, 'results.json'), 'w') as f:
        json.dump(results, f)
    for name in ('config.json', 'log.csv', 'last.pth'):
        with open(os.path.join(folder, name), 'w') as f:
            f.write('x')


def test_only_finished_runs_are_kept_without_checkpoints_and_never_overwritten(tmp_path):
    src, dest = tmp_path / 'out', tmp_path / 'kept'
    _run(src / '4_residual_blocks' / 'baseline' / 'seed100')
    _run(src / '4_residual_blocks' / 'steps' / 'seed100', finished=False)
    assert keep_runs(str(src), str(dest)) == [os.path.join('4_residual_blocks', 'baseline', 'seed100')]
    kept = dest / '4_residual_blocks' / 'baseline' / 'seed100'
    assert sorted(os.listdir(kept)) == ['config.json', 'log.csv', 'results.json']  # no checkpoint
    assert read_result(str(kept))['metric'] == 97.5  # what a comparison reads to reuse the run
    (kept / 'log.csv').write_text('kept')
    assert keep_runs(str(src), str(dest)) == [] and (kept / 'log.csv').read_text() == 'kept'


def test_a_missing_source_is_one_line(tmp_path, capsys):
    from keep_runs import main
    assert main([str(tmp_path / 'nothing'), str(tmp_path / 'd')]) == 2
    assert capsys.readouterr().err.count('\n') == 1
