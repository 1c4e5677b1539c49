"""The result tables of README.md and docs/ are what scripts/render_results.py renders from the committed files."""
import importlib.util
import json
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location('render_results', ROOT / 'scripts' / 'render_results.py')
render = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(render)


def test_result_blocks_are_current():
    stale = render.stale_blocks()
    assert not stale, 'stale result tables, run `python scripts/render_results.py`: ' + ', '.join(stale)


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
    r = dict(higher_is_better=True, seeds=seeds, points=[dict(
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
    table = _comparison(tmp_path, [90.0, 91.0, 92.0, 90.5, 91.5], [93.0, 94.1, 95.0, 93.4, 94.6])
    row = next(line for line in table.splitlines() if line.startswith('| 4 (22)'))
    assert '**ahead**' in row and '+3.02 (' in row
