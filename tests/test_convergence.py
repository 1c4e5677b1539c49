"""The convergence check: each arm's final training metric against the same arm trained twice as long."""
import copy
import json
import os

import pytest

from stepsnet.cli import main
from stepsnet.compare import cls_comparison, mnist1d_comparison, run_comparison
from stepsnet.compare.convergence import convergence, convergence_lines, load_reference, mismatch, skeleton

pytestmark = pytest.mark.usefixtures('one_thread')


def _results(epochs, train, val=None, higher=True):
    """A comparison's results as results.json holds them: one point, two arms, seeds 0-2."""
    arms = {}
    for role, values in train.items():
        arms[role] = dict(label=role, overrides=dict(model=f'model_{role}'),
                          train_per_seed={str(s): v for s, v in enumerate(values)},
                          per_seed={str(s): v for s, v in enumerate((val or train)[role])})
    return dict(task='cls', higher_is_better=higher, seeds=[0, 1, 2], machines=[],
                config=dict(epochs=epochs, lr=0.002, scale=[0.7, 1.0], out_dir=f'runs/{epochs}'),
                points=[dict(name='4 blocks', arms=arms)])


def test_an_arm_converges_within_the_tolerance_on_the_mean_over_seeds():
    here = _results(10, {'baseline': [98.0, 99.0, 97.0], 'steps': [95.0, 99.0, 99.0]})
    twice = _results(20, {'baseline': [99.0, 99.5, 98.5], 'steps': [99.0, 99.5, 99.5]})
    c = convergence(here, twice, 'ref')
    base, steps = c['arms']
    assert base['shortfall'] == pytest.approx(1.0) and base['converged']  # exactly the tolerance still passes
    assert steps['shortfall'] == pytest.approx(5.0 / 3) and steps['worst'] == pytest.approx(4.0)
    assert not steps['converged'] and not c['all']
    assert c['here'] == 10 and c['reference'] == 20 and c['length'] == 'epochs'
    text = '\n'.join(convergence_lines(c, 2, 'train top-1 (no augmentation)'))
    assert '1 of 2 arms converged' in text and '**no**: still learning' in text and '+1.67 / +4.00' in text
    # where lower is better (a loss), the shortfall is how much lower twice the training goes
    loss = convergence(_results(10, {'baseline': [2.0] * 3}, higher=False),
                       _results(20, {'baseline': [1.5] * 3}, higher=False), 'ref')
    assert loss['arms'][0]['shortfall'] == pytest.approx(0.5) and loss['all']


@pytest.mark.parametrize('change, why', [
    (lambda r: r['config'].update(epochs=30), 'not twice'),
    (lambda r: r['config'].update(lr=0.004), "differs in 'lr'"),
    (lambda r: r['points'][0]['arms']['steps']['overrides'].update(model='other'), 'another model'),
    (lambda r: r.update(seeds=[0, 1]), 'lacks seeds'),
    (lambda r: r.update(task='lm'), "'lm' comparison"),
])
def test_a_reference_that_is_not_this_comparison_twice_as_long_is_not_used(change, why):
    here = _results(10, {'baseline': [98.0] * 3, 'steps': [98.0] * 3})
    twice = _results(20, {'baseline': [99.0] * 3, 'steps': [99.0] * 3})
    assert mismatch(here, twice) is None  # where it writes (out_dir) is not part of the recipe
    change(twice)
    c = convergence(here, twice, 'ref')
    assert why in c['unusable'] and 'arms' not in c
    assert 'No statement' in '\n'.join(convergence_lines(c, 2))


def test_a_comparison_states_convergence_against_its_reference(tmp_path, capsys):
    fast = dict(batch_size=32, max_train_batches=2, workers=0, progress=False, warmup_epochs=0)
    twice = cls_comparison(seeds=[0], overrides=dict(fast, epochs=2), out=str(tmp_path / 'twice'))
    run_comparison(twice, progress=False)
    comp = cls_comparison(seeds=[0], overrides=dict(fast, epochs=1), out=str(tmp_path / 'once'))
    comp.reference = str(tmp_path / 'twice')
    r = run_comparison(comp, progress=False)
    c = r['convergence']
    ref = load_reference(str(tmp_path / 'twice' / 'results.json'))
    for arm in c['arms']:
        role = arm['role']
        assert arm['here_mean'] == pytest.approx(r['points'][0]['arms'][role]['train_stats']['mean'])
        assert arm['reference_mean'] == pytest.approx(ref['points'][0]['arms'][role]['train_stats']['mean'])
    saved = json.loads((tmp_path / 'once' / 'results.json').read_text())
    assert saved['convergence']['arms'] == json.loads(json.dumps(c['arms']))
    assert '**Convergence.**' in (tmp_path / 'once' / 'report.md').read_text()
    # a reference of another recipe: a warning before training, and no statement in the report
    other = cls_comparison(seeds=[0], overrides=dict(fast, epochs=1, lr=0.01), out=str(tmp_path / 'other'))
    other.reference = str(tmp_path / 'twice')
    capsys.readouterr()
    r = run_comparison(other, progress=False)
    assert "differs in 'lr'" in r['convergence']['unusable'] and 'warning: the convergence reference' in \
        capsys.readouterr().out


def test_the_convergence_flag_fails_before_training_and_is_refused_where_nothing_trains(tmp_path, capsys):
    assert main(['compare', 'cls', '--convergence', str(tmp_path / 'none'), '--out', str(tmp_path / 'c'),
                 '--no-progress', '--set', 'epochs=1']) == 2
    assert 'no convergence reference' in capsys.readouterr().err and not (tmp_path / 'c').exists()
    assert main(['compare', '--render', str(tmp_path), '--convergence', str(tmp_path)]) == 2
    assert '--convergence cannot be combined with --render' in capsys.readouterr().err


def test_results_written_before_the_per_seed_training_metric_map_by_seed_order():
    here = _results(10, {'baseline': [98.0, 97.0, 96.0]})
    old = copy.deepcopy(here['points'][0]['arms']['baseline'])
    del old['train_per_seed']
    old['train_stats'] = dict(values=[98.0, 97.0, 96.0])
    here['points'][0]['arms']['baseline'] = old
    c = convergence(here, _results(20, {'baseline': [99.0, 99.0, 99.0]}), 'ref')
    assert c['arms'][0]['shortfall'] == pytest.approx(2.0)


def test_the_committed_reference_is_the_main_job_twice_as_long():
    """make run passes docs/figures/analyses/main_job/twice: it must stay the default main job at twice the epochs
    (a change of the main job's recipe, models or seeds needs a new reference), and the committed main job's report
    must have converged by it."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    folder = os.path.join(root, 'docs', 'figures', 'analyses', 'main_job')
    assert mismatch(skeleton(mnist1d_comparison()), load_reference(os.path.join(folder, 'twice'))) is None
    with open(os.path.join(root, 'Makefile')) as f:
        assert '--convergence docs/figures/analyses/main_job/twice' in f.read()
    with open(os.path.join(folder, 'results.json')) as f:
        committed = json.load(f)
    assert committed['convergence']['all'] and len(committed['convergence']['arms']) == 4
