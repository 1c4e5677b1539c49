"""The paired statistics of stepsnet.stats against scipy and textbook values."""
import json
import math

import numpy as np
import pytest
from scipy import stats as st

from stepsnet.stats import (
    PairedTest,
    SignFlipTest,
    adjust,
    adjust_p,
    detectable,
    detectable_at_power,
    detectable_difference,
    format_test,
    holm,
    holm_divisors,
    outcome,
    paired_test,
    paired_test_arms,
    power_t,
    seeds_for_power,
    sign_flip_power,
    sign_flip_test,
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
    # quoted at 80% power: above the significance threshold (about 50% power), at the Holm rank's level
    assert dets[0].holm == pytest.approx(detectable_at_power(tests[0].std, 3, divisor=2))
    assert dets[0].holm > detectable_difference(tests[0].std, 3, divisor=2)
    assert power_t(dets[0].holm, tests[0].std, 3, divisor=2) == pytest.approx(0.8)
    assert dets[1].holm == pytest.approx(dets[1].unadjusted) and dets[1].power == 0.8


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


# ------------------------------------------------------------------------------------------------------------------
# The sign-flip test, ties and power


def _enumerate_p(d):
    """The two-sided sign-flip p by brute force over every sign pattern (the definition, in plain Python)."""
    import itertools
    obs = abs(sum(d))
    hits = sum(abs(sum(s * x for s, x in zip(signs, d))) >= obs - 1e-9
               for signs in itertools.product((1, -1), repeat=len(d)))
    return hits / 2 ** len(d)


@pytest.mark.parametrize('d', [
    [0.5, -0.2, 1.3, 0.9, 0.7, -0.4, 1.1],
    [0.25, 0.25, 0.25, 0.25, 0.25],  # every pattern but the two all-same ones has a smaller |sum|
    [1.0, -1.0, 2.0, -2.0, 0.5, 3.0, -0.25, 0.75, 1.5, 0.1],
    [0.2778, 0.5556, -0.2778, 0.8333, 0.2778, 1.1111, -0.5556, 0.2778],
])
def test_sign_flip_against_enumeration_and_scipy(d):
    t = sign_flip_test(d)
    assert t.exact and t.draws == 2 ** len(d) and t.ties == 0
    assert t.p == pytest.approx(_enumerate_p(d), abs=1e-12)
    ref = st.permutation_test((np.array(d),), np.mean, permutation_type='samples', n_resamples=np.inf,
                              alternative='two-sided')
    assert t.p == pytest.approx(ref.pvalue, abs=1e-12)
    assert t.min_p == 2 / 2 ** len(d)


def test_sign_flip_smallest_p_and_chunks():
    assert sign_flip_test([1.0, 2.0, 3.0]).p == 0.25  # 3 seeds, all one way: the smallest p there is
    assert sign_flip_test([1.0] * 8).p == 2 / 256
    rng = np.random.default_rng(1)
    d = rng.normal(0.4, 1.0, 18)  # 2**18 patterns: enumerated in chunks of 2**16
    assert sign_flip_test(d).p == pytest.approx(_chunkless(d), abs=1e-12)


def _chunkless(d):
    k = len(d)
    signs = ((np.arange(2 ** k)[:, None] >> np.arange(k)) & 1) * 2 - 1
    return float(np.mean(np.abs(signs @ d) >= abs(d.sum()) - 1e-9))


def test_sign_flip_monte_carlo_beyond_exact_max():
    rng = np.random.default_rng(2)
    d = rng.normal(0.3, 1.0, 14)
    exact = sign_flip_test(d)
    mc = sign_flip_test(d, exact_max=10, draws=100_000, rng_seed=5)
    assert not mc.exact and mc.draws == 100_000 and mc.rng_seed == 5
    assert mc.p == pytest.approx(exact.p, abs=0.01)  # 4 standard errors at p ~ 0.3
    assert sign_flip_test(d, exact_max=10, draws=100_000, rng_seed=5) == mc  # reproducible


def test_ties_carry_no_sign():
    d = [0.5, 2.5e-7, 1.0, -0.25, 0.0]  # a floating-point residue and an exact zero
    t = sign_flip_test(d)
    assert t.ties == 2 and t.n == 5 and t.draws == 2 ** 3
    assert t.p == pytest.approx(_enumerate_p([0.5, 1.0, -0.25]))
    pt = paired_test(d)
    assert pt.ties == 2 and pt.same_sign == 2  # the residue counts for neither side
    assert sign_flip_test([0.0, 1e-9, -1e-8]).p == 1.0  # every difference a tie: nothing to find
    assert sign_flip_test([0.3]).p is None


def test_adjust_p_holm_on_sign_flip_tests():
    tests = adjust_p([sign_flip_test([1.0] * 8), sign_flip_test([1.0, -0.5, 0.7, 0.2])])
    assert [t.p_adj for t in tests] == holm([t.p for t in tests])
    assert SignFlipTest.from_dict(json.loads(json.dumps(tests[0].to_dict()))) == tests[0]


def test_power_against_textbook():
    # one-sample / paired t-test, effect size 0.5 sd, two-sided 5%, 80% power: 34 pairs (Cohen 1988; G*Power)
    assert seeds_for_power(0.5, 1.0) == 34
    assert power_t(0.5, 1.0, 34) == pytest.approx(0.8078, abs=5e-4)
    # effect size 1 sd: 10 pairs (power 0.8031)
    assert seeds_for_power(1.0, 1.0) == 10
    assert power_t(0.0, 1.0, 10) == pytest.approx(0.05)  # no effect: the test's level
    assert seeds_for_power(1.0, 1.0, divisor=4) > 10  # a stricter level needs more seeds
    with pytest.raises(ValueError, match='non-zero'):
        seeds_for_power(0.0, 1.0)


def test_sign_flip_power_tracks_the_t_test():
    # normal differences: the permutation test is about as powerful as the t-test (and never above 1)
    for n in (10, 16):
        t = power_t(0.8, 1.0, n)
        assert sign_flip_power(0.8, 1.0, n, sims=2000, patterns=2000) == pytest.approx(t, abs=0.06)
    assert sign_flip_power(1.0, 1.0, 3) == 0.0  # 3 seeds: p >= 0.25 whatever the data
