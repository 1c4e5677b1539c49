"""Pre-registration: a protocol runs only as committed, and its report says so."""
import json
import os
import subprocess
import sys

import pytest

from stepsnet.config.protocol import ProtocolError, check_code_committed, load_protocol, registration

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPLICATION = os.path.join(REPO, 'configs', 'protocols', 'depth_replication.yaml')

PROTOCOL = """name: tiny
comparison: depth
recipe: cls/depth_digits.yaml
settings: {epochs: 1}
arguments: {blocks: [2], width: 32, heads: 2, jobs: 1, threads: 1}
seeds: {first: 100, count: 2}
out: runs/tiny
primary: {differences: [steps], test: sign-flip, alpha: 0.05, effect: 1.0, power: 0.8}
"""


def _git(repo, *args):
    subprocess.run(['git', *args], cwd=repo, check=True, capture_output=True,
                   env=dict(os.environ, GIT_AUTHOR_NAME='t', GIT_AUTHOR_EMAIL='t@t', GIT_COMMITTER_NAME='t',
                            GIT_COMMITTER_EMAIL='t@t'))


@pytest.fixture
def repo(tmp_path):
    _git(tmp_path, 'init', '-q')
    (tmp_path / 'p.yaml').write_text(PROTOCOL)
    return tmp_path


def test_uncommitted_protocol_is_refused(repo):
    with pytest.raises(ProtocolError, match='is not committed; commit it before the first run'):
        registration(str(repo / 'p.yaml'))


def test_registration_is_the_commit_that_added_the_file(repo):
    _git(repo, 'add', 'p.yaml')
    _git(repo, 'commit', '-qm', 'protocol')
    reg = registration(str(repo / 'p.yaml'))
    head = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=repo, capture_output=True, text=True).stdout.strip()
    blob = subprocess.run(['git', 'hash-object', 'p.yaml'], cwd=repo, capture_output=True, text=True).stdout.strip()
    assert reg['commit'] == reg['head'] == head and reg['blob'] == blob and reg['path'] == 'p.yaml'
    assert reg['date'][:4].isdigit() and 'T' in reg['date']
    # other work lands after it: the registration stays the commit that added the file
    (repo / 'other.txt').write_text('x')
    _git(repo, 'add', 'other.txt')
    _git(repo, 'commit', '-qm', 'other work')
    later = registration(str(repo / 'p.yaml'))
    assert later['commit'] == head and later['head'] != head


def test_modified_or_changed_protocol_is_refused(repo):
    _git(repo, 'add', 'p.yaml')
    _git(repo, 'commit', '-qm', 'protocol')
    (repo / 'p.yaml').write_text(PROTOCOL.replace('count: 2', 'count: 3'))
    with pytest.raises(ProtocolError, match='differs from its committed version'):
        registration(str(repo / 'p.yaml'))
    _git(repo, 'commit', '-qam', 'more seeds')  # committing the change does not make it the same protocol
    with pytest.raises(ProtocolError, match='was changed after it was registered'):
        registration(str(repo / 'p.yaml'))


def test_uncommitted_code_is_refused(repo):
    (repo / 'stepsnet').mkdir()
    (repo / 'stepsnet' / 'm.py').write_text('a = 1\n')
    _git(repo, 'add', '.')
    _git(repo, 'commit', '-qm', 'code')
    check_code_committed(str(repo))
    (repo / 'stepsnet' / 'm.py').write_text('a = 2\n')
    with pytest.raises(ProtocolError, match='uncommitted changes'):
        check_code_committed(str(repo))


def test_load_protocol_checks_fields(tmp_path):
    p = tmp_path / 'p.yaml'
    p.write_text(PROTOCOL)
    proto = load_protocol(str(p))
    assert proto.seeds == [100, 101] and proto.primary['test'] == 'sign-flip' and proto.settings == {'epochs': 1}
    for bad, message in [(PROTOCOL.replace('test: sign-flip', 'test: wilcoxon'), 'primary test must be one of'),
                         (PROTOCOL.replace('count: 2', 'count: 1'), 'seeds must be'),
                         (PROTOCOL + 'stopping: never\n', 'unknown field'),
                         (PROTOCOL.replace('differences: [steps]', 'differences: [baseline]'), 'arm roles'),
                         (PROTOCOL.replace('jobs: 1,', 'seeds: [1, 2], jobs: 1,'), 'may not set')]:
        p.write_text(bad)
        with pytest.raises(ProtocolError, match=message):
            load_protocol(str(p))


def test_cli_refuses_an_uncommitted_protocol_in_one_line(repo):
    proc = subprocess.run([sys.executable, '-m', 'stepsnet', 'compare', '--protocol', str(repo / 'p.yaml')],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and 'is not committed' in lines[0] and 'Traceback' not in proc.stderr
    assert not (repo / 'runs').exists()


def test_cli_refuses_flags_a_protocol_fixes():
    from stepsnet.cli import main
    with pytest.raises(ValueError, match='--seeds cannot be combined with --protocol'):
        from stepsnet.cli import build_parser
        args = build_parser().parse_args(['compare', '--protocol', REPLICATION, '--seeds', '3'])
        args.func(args)
    assert main(['compare', '--protocol', REPLICATION, '--set', 'epochs=2']) == 2


def test_replication_protocol_is_complete():
    proto = load_protocol(REPLICATION)
    assert proto.comparison == 'depth' and proto.arguments['blocks'] == [4, 8, 16, 32]
    assert proto.primary['test'] == 'sign-flip' and proto.primary['effect'] == 1.0
    assert min(proto.seeds) >= 100  # fresh seeds: none used by the pilot (0-7) or the main job (0-2)
    assert proto.hypothesis and proto.stopping_rule and proto.secondary and proto.plan


def test_protocol_report_lists_deviations(tmp_path):
    """A protocol report from finished runs: pre-registered line, primary family, power, deviations."""
    from stepsnet import compare as C
    from stepsnet.compare.harness import _run_dir
    proto = load_protocol(str(_write(tmp_path)))
    comp = C.protocol_comparison(proto)
    commit = 'a' * 40
    machine = {'cpu': 'x'}
    for point in comp.points:
        for arm in point.arms:
            for seed, v in zip(proto.seeds, (90.0, 91.0) if arm.role == 'baseline' else (92.0, 95.0)):
                if arm.role == 'steps' and seed == 101:
                    continue  # one run not finished: a deviation
                d = tmp_path / _run_dir(comp, point, arm, seed)
                d.mkdir(parents=True)
                (d / 'result.json').write_text(json.dumps(dict(
                    metric=v, train_metric=v, loss=1.0, seen=1, train_time=1.0, curve=[[1, v]], params=1, macs=1,
                    blocks=2, layers=12, plan='', commit=commit if seed == 100 else 'b' * 40, machine=machine)))
    comp.out = str(tmp_path / comp.out)
    reg = dict(path='p.yaml', commit=commit, date='2026-12-06T20:00:00+00:00', blob='c' * 40, head=commit)
    r = C.run_comparison(comp, progress=False, train=False, protocol={**proto.summary(), **reg})
    d = r['points'][0]['diffs']['steps']
    assert d['family'] == 'primary' and r['points'][0]['diffs']['steps_train']['family'] == 'secondary'
    assert d['n'] == 1 and 'power' not in d  # one pair: no spread, no power
    devs = r['deviations']
    assert any('seeds [101] not finished' in x for x in devs)
    assert any('trained at commits' in x and 'bbbbbbbbbbbb' in x for x in devs)
    report = open(os.path.join(comp.out, 'report.md')).read()
    assert f'**Pre-registered** at commit {commit[:12]} (2026-12-06)' in report
    assert '**Deviations from the protocol:** 2 deviations' in report
    assert 'decided by the exact sign-flip (permutation) test' in report


def _write(tmp_path):
    p = tmp_path / 'p.yaml'
    p.write_text(PROTOCOL)
    return p
