"""The result tables of docs/ are what stepsnet.compare.results_docs renders from the committed files (the command
line: scripts/render_results.py), with the statistics of stepsnet.compare.judge and stepsnet.reports.lm_sweep (none of
its own)."""
import copy
import json
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

from stepsnet.compare import results_docs as render
from stepsnet.stats import format_p

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_result_blocks_are_current():
    stale = render.stale_blocks(ROOT)
    assert not stale, 'stale result tables, run `python scripts/render_results.py`: ' + ', '.join(stale)


def test_script_checks_from_any_folder(tmp_path):
    """The command line as a user runs it, from another folder: --check finds nothing stale."""
    script = str(ROOT / 'scripts' / 'render_results.py')
    run = subprocess.run([sys.executable, script, '--check'], cwd=tmp_path, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0 and run.stdout == '', run.stdout + run.stderr


def test_every_block_has_markers_once():
    for name, (doc, _) in render.BLOCKS.items():
        text = (ROOT / doc).read_text(encoding='utf-8')
        begin, end = render.markers(name)
        assert text.count(begin) == 1 and text.count(end) == 1, (doc, name)


def test_render_text_replaces_only_its_block():
    text = 'a\n<!-- results:x:begin -->\nold\n<!-- results:x:end -->\nb\n<!-- results:y:begin -->\nkeep\n' \
           '<!-- results:y:end -->\n'
    new = render.render_text(text, 'x', 'new\n')
    assert 'new' in new and 'old' not in new and 'keep' in new and new.startswith('a\n') and '\nb\n' in new
    with pytest.raises(ValueError, match='no <!-- results:z:begin -->'):
        render.render_text(text, 'z', '')


def _comparison(tmp_path, per_seed_base, per_seed_steps):
    seeds = list(range(len(per_seed_base)))
    diffs = [s - b for s, b in zip(per_seed_steps, per_seed_base)]
    arm = lambda vals, blocks: dict(blocks=blocks, layers=5 * blocks + 2, per_seed={str(k): v for k, v in  # noqa: E731
                                                                                     zip(seeds, vals)})
    r = dict(task='cls', metric='val top-1 (%)', higher_is_better=True, seeds=seeds, points=[dict(
        name='4 residual blocks', arms=dict(baseline=arm(per_seed_base, 4), steps=arm(per_seed_steps, 8)),
        diffs=dict(steps=dict(values=diffs)))])
    path = tmp_path / 'results.json'
    path.write_text(json.dumps(r))
    return render.render_comparison(path)


def test_tie_at_two_standard_errors_is_not_a_verdict(tmp_path):
    """The three-seed differences 0, -1.11, -1.11 sit at t = -2.0 (p ~ 0.18): not distinguishable, no 'behind'."""
    table = _comparison(tmp_path, [97.78, 98.33, 98.06], [97.78, 97.22, 96.95])
    row = next(line for line in table.splitlines() if line.startswith('| 4 (22)'))
    assert 'not distinguishable (3 seeds)' in row and '**behind**' not in row
    assert '0.184' in row  # the paired t-test's two-sided p, the only comparison of the report


def test_clear_difference_is_a_verdict(tmp_path):
    """Six seeds all one way: the sign-flip p is 2/64, so both tests can call it (with five, 2/32 could not)."""
    table = _comparison(tmp_path, [90.0, 91.0, 92.0, 90.5, 91.5, 90.8], [93.0, 94.1, 95.0, 93.4, 94.6, 93.9])
    row = next(line for line in table.splitlines() if line.startswith('| 4 (22)'))
    assert '**ahead**' in row and '+3.03 (' in row and '| 0.031 |' in row  # the sign-flip p, 2 / 2**6
    five = _comparison(tmp_path, [90.0, 91.0, 92.0, 90.5, 91.5], [93.0, 94.1, 95.0, 93.4, 94.6])
    row = next(line for line in five.splitlines() if line.startswith('| 4 (22)'))
    assert 'not distinguishable (5 seeds)' in row and '| 0.062 |' in row  # t-test p 0.0001, sign-flip 2/32


def test_comparison_read_as_stored_or_judged_again(tmp_path):
    """A results.json written before the sign-flip test is judged again on a copy (the file left as it is); one
    written by stepsnet.compare.judge is read as stored; both render the same table with judge's verdicts."""
    from stepsnet.compare import judge

    r = json.loads((ROOT / 'docs' / 'figures' / 'analyses' / 'pilot_8seeds' / 'results.json').read_text())
    for d in [d for p in r['points'] for d in p['diffs'].values()] + list(r['trend'].values()):
        for key in ('sign_flip', 'family', 'ties'):  # as written before the sign-flip test
            d.pop(key, None)
    old = tmp_path / 'old' / 'results.json'
    old.parent.mkdir()
    old.write_text(json.dumps(r))
    before = old.read_text()
    new = tmp_path / 'new' / 'results.json'
    new.parent.mkdir()
    judged = judge(copy.deepcopy(r))
    new.write_text(json.dumps(judged))
    table = render.render_comparison(old)
    assert old.read_text() == before and table == render.render_comparison(new)
    assert render.judged(new) == judged  # read as stored: nothing recomputed
    d = judged['points'][0]['diffs']['steps_train']  # training top-1 at 4 blocks: t-test below 0.05, sign-flip not
    assert d['p_adj'] < 0.05 < d['sign_flip']['p_adj'] and d['outcome'] == 'not distinguishable'
    row = next(line for line in table.splitlines() if line.startswith('| 4 | '))
    assert f'| {format_p(d["p_adj"])} | {format_p(d["sign_flip"]["p_adj"])} | not distinguishable' in row


def _repository(root: pathlib.Path, *paths: str) -> pathlib.Path:
    """A repository root at ``root`` holding copies of ``paths`` (relative to the real one)."""
    for rel in paths:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / rel, root / rel)
    return root


LM_FILES = ('docs/figures/lm/sweep.csv', 'docs/figures/lm/llama/runs.csv', 'benchmarks/lm_sweep.yaml',
            'benchmarks/llama_compare.yaml', 'configs/lm/cpu.yaml')


def test_summary_evidence_and_a_pre_registered_replication(tmp_path):
    """Rows from results without a protocol are exploratory; a replication's results with its protocol give its
    primary rows (the steps validation differences) as confirmatory, decided by the protocol's test. Everything is
    read from the root the caller names (here a folder holding only these files), nothing from the package's own."""
    from stepsnet.compare import judge

    root = _repository(tmp_path, *LM_FILES)
    r = json.loads((ROOT / 'docs' / 'figures' / 'analyses' / 'pilot_8seeds' / 'results.json').read_text())
    r['protocol'] = dict(commit='0123456789abcdef0123', date='2026-12-06', path='x.yaml', blob='f' * 40,
                         primary=dict(differences=['steps'], test='sign-flip', alpha=0.05))
    replication = root / 'docs' / 'figures' / 'analyses' / 'replication' / 'results.json'
    replication.parent.mkdir(parents=True)
    replication.write_text(json.dumps(judge(r)))  # as stepsnet compare writes it
    summary = render.render_summary(root)
    assert summary == render.render_block(root, 'summary')
    rows = [line for line in summary.splitlines() if 'pre-registered replication' in line]
    assert len(rows) == 3 and all('val top-1' in row for row in rows)  # the primary family only, no training rows
    assert all('| confirmatory (pre-registered at 0123456789ab) |' in row for row in rows)
    lm = [line for line in summary.splitlines() if line.startswith('| LM sweep')]
    assert lm and all('| exploratory |' in row for row in lm)
    llama = [line for line in summary.splitlines() if line.startswith('| Llama pair')]
    assert llama and all('| pre-registered (`benchmarks/llama_compare.yaml`)' in row for row in llama)
    assert 'pilot' not in summary  # the other folders are not in tmp_path: skipped while they do not exist


def test_missing_files_are_named(tmp_path):
    """A root without docs/ is refused; a result file a block needs is named in the error, with its block."""
    with pytest.raises(FileNotFoundError, match='has no docs/ folder'):
        render.stale_blocks(tmp_path)
    root = _repository(tmp_path, 'docs/analyses.md', *LM_FILES[2:])
    csv_path = root / 'docs' / 'figures' / 'analyses' / 'depth_benchmark.csv'
    expected = f'block depth-benchmark of docs/analyses.md: {csv_path}: no such file'
    with pytest.raises(FileNotFoundError, match=re.escape(expected)):
        render.stale_blocks(root, ['depth-benchmark'])
    with pytest.raises(FileNotFoundError, match=re.escape(str(root / 'docs' / 'figures' / 'analyses' / 'pilot'))):
        render.render_block(root, 'pilot')
    # the LM sweep without runs is a sweep that has not run; its protocol is needed
    assert '| depth 8 |' in render.render_block(root, 'lm-sweep')
    (root / 'benchmarks' / 'lm_sweep.yaml').unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(str(root / 'benchmarks' / 'lm_sweep.yaml'))):
        render.render_block(root, 'lm-sweep')
    with pytest.raises(ValueError, match='unknown block.*no-such-block; expected some of summary, '):
        render.stale_blocks(root, ['no-such-block'])


def test_stale_block_is_found_and_rewritten(tmp_path, capsys):
    """A block whose text differs from what its file renders is stale; writing it back gives the committed text."""
    root = _repository(tmp_path, 'docs/analyses.md', 'docs/figures/analyses/depth_benchmark.csv')
    doc = root / 'docs' / 'analyses.md'
    committed = doc.read_text()
    doc.write_text(render.render_text(committed, 'depth-benchmark', '| an old table |\n'))
    assert render.stale_blocks(root, ['depth-benchmark']) == ['docs/analyses.md: depth-benchmark']
    assert render.write_blocks(root, ['depth-benchmark']) == ['docs/analyses.md: depth-benchmark']
    assert 'depth-benchmark updated' in capsys.readouterr().out
    assert doc.read_text() == committed and render.stale_blocks(root, ['depth-benchmark']) == []
