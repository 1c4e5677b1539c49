"""The paired statistics of stepsnet.stats against scipy and textbook values."""
import json
import math

import numpy as np
import pytest
from scipy import stats as st

from stepsnet.stats import (
    PairedTest,
    adjust,
    detectable,
    detectable_difference,
    format_test,
    holm,
    holm_divisors,
    outcome,
    paired_test,
    paired_test_arms,
    verdict,
)

ARMS = [
    (np.array([97.5, 98.1, 96.9, 97.7, 98.3]), np.array([97.2, 97.4, 97.0, 96.8, 97.9])),
    (np.array([0.51, 0.49, 0.55]), np.array([0.50, 0.52, 0.50])),
    (np.array([1.0, 2.0, 3.5, 4.25, 5.0, 6.0, 7.5, 8.0]), np.array([1.5, 2.0, 3.0, 4.0, 5.5, 6.5, 7.0, 8.5])),
]


@pytest.mark.parametrize('a,b', ARMS)
def test_paired_test_matches_scipy_ttest_rel(a, b):
    t = paired_test(a - b)
    ref = st.ttest_rel(a, b)
    ci = ref.confidence_interval(0.95)
    assert t.n == len(a)
    assert t.mean == pytest.approx(float(np.mean(a - b)), abs=1e-12)
    assert t.std == pytest.approx(float(np.std(a - b, ddof=1)), rel=1e-12)
    assert t.t == pytest.approx(float(ref.statistic), rel=1e-10)
    assert t.p == pytest.approx(float(ref.pvalue), rel=1e-10)
    assert (t.ci_low, t.ci_high) == pytest.approx((float(ci.low), float(ci.high)), rel=1e-10)
    assert t.same_sign == int(np.sum(np.sign(a - b) == np.sign(t.mean)))
    # the same through the dict-of-seeds form, with a seed missing from one arm ignored
    by_seed = paired_test_arms(dict(enumerate(a.tolist() + [1.0])), dict(enumerate(b.tolist())))
    assert by_seed.p == pytest.approx(t.p, rel=1e-12)


def test_pilot_four_block_tie_is_not_distinguishable():
    # equal-blocks arm at 4 residual blocks in the 3-seed pilot: the old 2-standard-error rule called it worse
    t = paired_test([0.0, -1.1111111111111143, -1.1111111111111])
    assert t.t == pytest.approx(-2.000, abs=1e-3)
    assert t.p == pytest.approx(0.1835, abs=1e-3)
    assert t.same_sign == 2
    assert outcome(t) == 'not distinguishable'
    words = verdict(t)
    assert words.startswith('not distinguishable with 3 seeds (95% CI ')
    assert f'{t.ci_low:+.2f}' in words and f'{t.ci_high:+.2f}' in words
    assert t.ci_low < 0 < t.ci_high


def test_holm_textbook_example():
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm_divisors([0.01, 0.04, 0.03, 0.005]) == [3, 1, 2, 4]


def test_holm_monotone_capped_and_skips_none():
    raw = [0.2, None, 0.001, 0.6, 0.3, 0.04]
    adj = holm(raw)
    assert adj[1] is None
    kept = [(p, a) for p, a in zip(raw, adj) if p is not None]
    for p, a in kept:
        assert p <= a <= 1.0
    # the adjusted values keep the order of the raw ones (step-down: a running maximum)
    order = sorted(kept)
    assert all(x[1] <= y[1] for x, y in zip(order, order[1:]))
    # 5 tests counted, None left out: 0.001 * 5, 0.04 * 4, then 0.2 * 3 = 0.6 carried up to 0.3 and 0.6
    assert adj == pytest.approx([0.6, None, 0.005, 0.6, 0.6, 0.16])
    assert holm([0.6, 0.9]) == [1.0, 1.0]  # 0.6 * 2 capped at 1; the larger p cannot fall below it
    assert holm([]) == []
    assert holm([0.3]) == [0.3]


def test_adjust_and_verdict_direction():
    strong = paired_test([1.0, 1.2, 0.9, 1.1, 1.05])  # clearly positive
    tests = adjust([strong, paired_test([0.5, -0.4, 0.1])])
    assert tests[0].p_adj == pytest.approx(min(1, 2 * strong.p))
    assert outcome(tests[0], higher_is_better=True) == 'ahead'
    assert outcome(tests[0], higher_is_better=False) == 'behind'  # a larger loss is worse
    assert outcome(tests[0], higher_is_better=None) == 'above'
    assert verdict(tests[0]).startswith('ahead of the baseline (adjusted p ')
    assert verdict(tests[1]).startswith('not distinguishable with 3 seeds')
    # a difference that passes on its own but not after the correction is not a verdict
    raw = paired_test([1.0, 1.3, 0.8, 1.2])
    assert raw.p < 0.05
    many = adjust([raw] + [paired_test([0.1, -0.1, 0.2, -0.3])] * 30)
    assert many[0].p_adj >= 0.05 and outcome(many[0]) == 'not distinguishable'


def test_degenerate_inputs():
    assert outcome(paired_test([])) == 'not run' and verdict(paired_test([])) == 'not run'
    one = paired_test([2.0])
    assert one.n == 1 and one.std is None and one.p is None
    assert verdict(one) == 'one seed: no test'
    zero = paired_test([0.0, 0.0])  # e.g. num_steps 1: the Steps model is the residual model
    assert zero.p == 1.0 and zero.t is None and outcome(zero) == 'not distinguishable' and zero.same_sign == 0
    same = paired_test([0.5, 0.5, 0.5])
    assert same.p == 0.0 and outcome(same) == 'ahead' and same.same_sign == 3
    assert paired_test([1.0, None, 3.0]).n == 2


def test_detectable_difference():
    sd, n = 0.58, 3
    d = detectable_difference(sd, n)
    assert d == pytest.approx(st.t.ppf(0.975, 2) * sd / math.sqrt(3))
    # a mean difference of exactly that size sits at p = 0.05
    assert 2 * st.t.sf(d / (sd / math.sqrt(n)), n - 1) == pytest.approx(0.05)
    assert detectable_difference(sd, n, divisor=4) > d
    assert detectable_difference(None, 3) is None and detectable_difference(1.0, 1) is None
    tests = [paired_test([1.0, 1.2, 0.9]), paired_test([0.3, -0.2, 0.4])]
    dets = detectable(tests)
    assert [x.divisor for x in dets] == [2, 1]
    assert dets[0].holm == pytest.approx(detectable_difference(tests[0].std, 3, divisor=2))
    assert dets[1].holm == pytest.approx(dets[1].unadjusted)


def test_json_round_trip_and_format():
    t = adjust([paired_test([0.0, -1.1, -1.2]), paired_test([0.3, 0.2, 0.4])])[0]
    back = PairedTest.from_dict(json.loads(json.dumps(t.to_dict())))
    assert back == t
    line = format_test(t)
    assert line.startswith(f'{t.mean:+.2f} ± {t.std:.2f}, 95% CI ') and 'adjusted p' in line
    assert line.endswith('2/3 seeds the same way')


def test_verdict_without_interval():
    t = paired_test([0.0, -1.1, -1.2])
    assert verdict(t, interval=False) == 'not distinguishable with 3 seeds'
    assert verdict(paired_test([1.0, 1.1, 1.2, 1.0]), interval=False) == 'ahead of the baseline'


def test_table_cells_and_machine_sentence():
    from stepsnet.stats import TABLE_HEAD, machine_sentence, table_cells
    t = adjust([paired_test([0.0, -1.1, -1.2])])[0]
    cells = table_cells(t)
    assert len(cells) == len(TABLE_HEAD.split(' | ')) and cells[2] == '3' and cells[-1] == '2/3'
    assert table_cells(paired_test([]))[0] == 'not run'
    m = dict(cpu='X', cpu_count=2, torch_threads=1, torch='2', blas='mkl', cpu_capability='AVX2')
    assert machine_sentence([m]).startswith('Machine: X (2 CPUs), 1 torch thread(s)')
    assert machine_sentence([]).startswith('Machine not recorded')
    assert machine_sentence([m, dict(m, cpu='Y')], 3).startswith('Machines (2): ')
    assert all(s.endswith('not across CPUs.') for s in (machine_sentence([m]), machine_sentence([])))
