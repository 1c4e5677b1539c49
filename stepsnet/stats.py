"""Paired statistics for every comparison of the project: one test, one correction, one wording.

Every comparison pairs its arms by seed (same initialisation seed, same batches), so a comparison is a set of
per-seed differences ``arm - baseline``. :func:`paired_test` turns them into a :class:`PairedTest`: mean, sample
standard deviation (ddof 1), the 95% confidence interval of the mean from the t distribution, the t statistic and
the two-sided p of the paired t-test (the same numbers as ``scipy.stats.ttest_rel`` on the two arms), and how many
seeds point the same way as the mean. A report makes many such comparisons at once, so :func:`adjust` applies
Holm's step-down correction across all of them (family-wise error 5%), and :func:`verdict` words a difference as
``ahead`` / ``behind`` only where the adjusted p is below 0.05; anything else is "not distinguishable" at that
number of seeds, with its interval. :func:`detectable_difference` says what a number of seeds can settle: the
smallest mean difference that would reach significance at the observed spread.

Example::

    tests = adjust([paired_test(d) for d in per_seed_differences])
    for t in tests:
        print(format_test(t), verdict(t, higher_is_better=True))
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from scipy import stats as _st

__all__ = ['ALPHA', 'CONFIDENCE', 'POWER', 'TIE_TOLERANCE', 'EXACT_MAX', 'MONTE_CARLO_DRAWS', 'PairedTest',
           'paired_test', 'paired_test_arms', 'SignFlipTest', 'sign_flip_test', 'holm', 'holm_divisors', 'adjust',
           'adjust_p', 'outcome', 'verdict', 'detectable_difference', 'Detectable', 'detectable', 'power_t',
           'detectable_at_power', 'seeds_for_power', 'sign_flip_power', 'format_test', 'format_p', 'table_cells',
           'TABLE_HEAD', 'TABLE_HEAD_BOTH', 'table_cells_both', 'machine_sentence', 'drop_ties', 'RULES',
           'test_family', 'deciding_p', 'p_name', 'mean_sd']

ALPHA = 0.05  # family-wise error of one report (Holm)
CONFIDENCE = 0.95  # the confidence level of the intervals
POWER = 0.80  # the power a design is planned for, and at which "detectable" differences are quoted
# differences smaller than this (in the metric's units) are ties: floating-point noise, not a direction. Top-1 in
# percent on n images moves in steps of 100 / n, a loss in steps far above 1e-6.
TIE_TOLERANCE = 1e-6
EXACT_MAX = 20  # the sign-flip test enumerates all 2**n sign patterns up to this many non-tied differences
MONTE_CARLO_DRAWS = 200_000  # beyond that, random sign patterns (a fixed generator seed: the p is reproducible)


@dataclass(frozen=True)
class PairedTest:
    """The paired t-test of one set of per-seed differences (``arm - baseline``).

    Attributes:
        n: Number of paired seeds.
        mean: Mean difference (None: no seed).
        std: Sample standard deviation of the differences, ddof 1 (None: fewer than two seeds).
        ci_low: Lower end of the 95% confidence interval of the mean (t distribution, n - 1 degrees of freedom).
        ci_high: Upper end of that interval.
        t: t statistic, mean / (std / sqrt(n)) (None: fewer than two seeds, or every difference exactly 0).
        p: Two-sided p of the paired t-test (1.0 when every difference is exactly 0; 0.0 when every difference
            is the same non-zero value).
        same_sign: Seeds whose difference has the sign of the mean (a tie, ``|d| <= TIE_TOLERANCE``, counts for
            neither side).
        p_adj: p after Holm's correction across the comparisons of one report (None until :func:`adjust`).
        values: The per-seed differences.
        ties: Seeds whose difference is a tie (``|d| <= TIE_TOLERANCE``).
    """
    n: int
    mean: Optional[float]
    std: Optional[float]
    ci_low: Optional[float]
    ci_high: Optional[float]
    t: Optional[float]
    p: Optional[float]
    same_sign: int
    p_adj: Optional[float] = None
    values: Tuple[float, ...] = ()
    ties: int = 0

    def to_dict(self) -> Dict[str, Any]:
        """Plain JSON types (the values as a list)."""
        d = dataclasses.asdict(self)
        d['values'] = list(self.values)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PairedTest:
        """The inverse of :meth:`to_dict` (keys other than the fields are ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        kw['values'] = tuple(kw.get('values') or ())
        return cls(**kw)


def mean_sd(values: Sequence[Optional[float]]) -> Tuple[Optional[float], Optional[float], int]:
    """Mean, sample standard deviation (ddof 1) and count of ``values`` (None entries, runs not done, skipped): the
    mean is None without values and the deviation None with fewer than two (numpy's sums, as the tests use)."""
    arr = np.asarray([v for v in values if v is not None], dtype=np.float64)
    return (float(arr.mean()) if arr.size else None, float(arr.std(ddof=1)) if arr.size > 1 else None, int(arr.size))


def paired_test(differences: Sequence[Optional[float]]) -> PairedTest:
    """The paired t-test of per-seed differences ``arm - baseline`` (None entries, runs not done, are skipped).

    The same t and p as ``scipy.stats.ttest_rel(arm, baseline)``; the two degenerate cases scipy leaves as nan or
    infinite are given plain values: every difference exactly 0 is t None, p 1 (no difference at all); every
    difference the same non-zero value is t None, p 0 (no spread: the same difference in every seed).
    """
    xs = tuple(float(v) for v in differences if v is not None)
    n = len(xs)
    if n == 0:
        return PairedTest(0, None, None, None, None, None, None, 0)
    arr = np.asarray(xs, dtype=np.float64)
    mean = float(arr.mean())  # numpy's sums, so that a stored mean reads back bit-identical
    ties = sum(1 for v in xs if abs(v) <= TIE_TOLERANCE)
    same = sum(1 for v in xs if abs(v) > TIE_TOLERANCE and (v > 0) == (mean > 0)) if mean != 0 else 0
    if n == 1:
        return PairedTest(1, mean, None, None, None, None, None, same, values=xs, ties=ties)
    std = float(arr.std(ddof=1))
    se = std / math.sqrt(n)
    if se == 0:
        t, p = None, (1.0 if mean == 0 else 0.0)
        return PairedTest(n, mean, std, mean, mean, t, p, same, values=xs, ties=ties)
    t = mean / se
    p = float(2 * _st.t.sf(abs(t), n - 1))
    half = float(_st.t.ppf(0.5 + CONFIDENCE / 2, n - 1)) * se
    return PairedTest(n, mean, std, mean - half, mean + half, t, p, same, values=xs, ties=ties)


def paired_test_arms(arm: Mapping[Any, float], baseline: Mapping[Any, float]) -> PairedTest:
    """:func:`paired_test` of ``arm[s] - baseline[s]`` over the seeds ``s`` both have (dicts seed -> metric)."""
    return paired_test([arm[s] - baseline[s] for s in arm if s in baseline])


def drop_ties(differences: Sequence[float], tolerance: float = TIE_TOLERANCE) -> np.ndarray:
    """The differences with the ties (``|d| <= tolerance``) removed: they carry no sign, and a floating-point
    residue such as 2.5e-7 must not count as a direction."""
    arr = np.asarray([float(v) for v in differences if v is not None], dtype=np.float64)
    return arr[np.abs(arr) > tolerance]


@dataclass(frozen=True)
class SignFlipTest:
    """The exact paired sign-flip (permutation) test of per-seed differences: no assumption of normality.

    Under the null hypothesis that the two arms are exchangeable within a seed, each difference is as likely to
    have either sign; the p is the share of the ``2**k`` sign patterns of the ``k`` non-tied differences whose
    |sum| is at least the observed |sum| (two-sided). With ``k`` seeds the smallest possible p is ``2 / 2**k``:
    0.25 with 3 seeds, 0.0078 with 8.

    Attributes:
        n: Differences given.
        ties: Differences treated as ties (``|d| <= tolerance``): left out, they carry no sign.
        p: Two-sided p (None: no non-tied difference, or fewer than two seeds).
        exact: True when every sign pattern was enumerated; False: ``draws`` random patterns (Monte Carlo, the
            p then is ``(1 + hits) / (1 + draws)``, a valid p with generator seed ``rng_seed``).
        draws: Sign patterns evaluated.
        min_p: The smallest p this number of non-tied differences can give.
        p_adj: p after Holm's correction within its family (None until :func:`adjust_p`).
    """
    n: int
    ties: int
    p: Optional[float]
    exact: bool
    draws: int
    min_p: Optional[float]
    p_adj: Optional[float] = None
    tolerance: float = TIE_TOLERANCE
    rng_seed: Optional[int] = None

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SignFlipTest:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def sign_flip_test(differences: Sequence[Optional[float]], tolerance: float = TIE_TOLERANCE,
                   exact_max: int = EXACT_MAX, draws: int = MONTE_CARLO_DRAWS, rng_seed: int = 0) -> SignFlipTest:
    """The exact paired sign-flip test of ``differences`` (None entries, runs not done, are skipped).

    Ties (``|d| <= tolerance``) are dropped. Up to ``exact_max`` remaining differences every sign pattern is
    enumerated (``2**k`` of them); beyond, ``draws`` random patterns from ``numpy.random.default_rng(rng_seed)``.
    The comparison with the observed sum allows a relative rounding slack of 1e-9, so that a pattern that gives the
    same sum in another order of additions counts as reaching it.
    """
    xs = [float(v) for v in differences if v is not None]
    d = drop_ties(xs, tolerance)
    k = int(d.size)
    ties = len(xs) - k
    if len(xs) < 2:  # one seed: nothing to test
        return SignFlipTest(len(xs), ties, None, True, 0, None, tolerance=tolerance)
    if k == 0:  # every difference a tie: no difference at all
        return SignFlipTest(len(xs), ties, 1.0, True, 1, None, tolerance=tolerance)
    observed = abs(float(d.sum()))
    slack = 1e-9 * max(1.0, float(np.abs(d).sum()))
    if k <= exact_max:
        hits = 0
        # the patterns in chunks of at most 2**16 rows: bounded memory at k = 20
        chunk_bits = min(k, 16)
        low = ((np.arange(2 ** chunk_bits)[:, None] >> np.arange(chunk_bits)) & 1) * 2 - 1  # rows of +-1
        low_sums = low @ d[:chunk_bits]
        for high in range(2 ** (k - chunk_bits)):
            signs_high = ((high >> np.arange(k - chunk_bits)) & 1) * 2 - 1
            total = low_sums + float(signs_high @ d[chunk_bits:])
            hits += int(np.count_nonzero(np.abs(total) >= observed - slack))
        return SignFlipTest(len(xs), ties, hits / 2 ** k, True, 2 ** k, 2 / 2 ** k, tolerance=tolerance)
    rng = np.random.default_rng(rng_seed)
    hits, done = 0, 0
    while done < draws:
        m = min(50_000, draws - done)
        signs = rng.integers(0, 2, size=(m, k)) * 2 - 1
        hits += int(np.count_nonzero(np.abs(signs @ d) >= observed - slack))
        done += m
    return SignFlipTest(len(xs), ties, (1 + hits) / (1 + draws), False, draws, 2 / 2 ** k, tolerance=tolerance,
                        rng_seed=rng_seed)


def adjust_p(tests: Sequence[Any]) -> List[Any]:
    """Any tests with a ``p`` field (:class:`PairedTest`, :class:`SignFlipTest`) with ``p_adj`` set by Holm's
    correction across all of them: one family."""
    return [dataclasses.replace(t, p_adj=a) for t, a in zip(tests, holm([t.p for t in tests]))]


# which test decides a verdict: a protocol declares one ('t' or 'sign-flip'); an exploratory report calls a difference
# only where both (each Holm-adjusted in its family) are below alpha ('both'), so that no verdict rests on normality
RULES = {'t': 'the paired t-test', 'sign-flip': 'the exact sign-flip (permutation) test',
         'both': 'both the paired t-test and the exact sign-flip test'}


def test_family(differences: Sequence[Sequence[Optional[float]]]) -> List[Tuple[PairedTest, SignFlipTest]]:
    """Both tests of every per-seed difference list of one family, each Holm-adjusted across the family:
    ``[(paired t-test, sign-flip test), ...]`` in the order given."""
    tests = adjust([paired_test(d) for d in differences])
    flips = adjust_p([sign_flip_test(d) for d in differences])
    return list(zip(tests, flips))


def deciding_p(t: PairedTest, s: SignFlipTest, rule: str = 'both') -> Optional[float]:
    """The adjusted p that decides a verdict under ``rule`` (a key of :data:`RULES`): the t-test's, the sign-flip
    test's, or for ``both`` the larger of the two (None where a test has no p)."""
    if rule not in RULES:
        raise ValueError(f'rule must be one of {sorted(RULES)}, got {rule!r}')
    if rule == 't':
        return t.p_adj
    if rule == 'sign-flip':
        return s.p_adj
    return None if t.p_adj is None or s.p_adj is None else max(t.p_adj, s.p_adj)


def p_name(rule: str) -> str:
    """How a verdict names the p that decided it under ``rule``."""
    return {'t': 'adjusted t p', 'sign-flip': 'adjusted sign-flip p',
            'both': 'adjusted p, the larger of t and sign-flip'}[rule]


def holm(pvalues: Sequence[Optional[float]]) -> List[Optional[float]]:
    """Holm's step-down adjusted p values, in the order given (None entries stay None and do not count).

    Sorted ascending, the i-th smallest of m p values becomes max over j <= i of min(1, (m - j + 1) p_(j)): the
    adjusted values keep the order of the raw ones and never exceed 1.
    """
    idx = sorted((i for i, p in enumerate(pvalues) if p is not None), key=lambda i: pvalues[i])
    m = len(idx)
    out: List[Optional[float]] = [None] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(idx):
        running = max(running, min(1.0, (m - rank) * float(pvalues[i])))
        out[i] = running
    return out


def holm_divisors(pvalues: Sequence[Optional[float]]) -> List[Optional[int]]:
    """For each p its Holm divisor m - rank + 1 (rank 1 = smallest p): it is tested at ``ALPHA / divisor``."""
    idx = sorted((i for i, p in enumerate(pvalues) if p is not None), key=lambda i: pvalues[i])
    out: List[Optional[int]] = [None] * len(pvalues)
    for rank, i in enumerate(idx):
        out[i] = len(idx) - rank
    return out


def adjust(tests: Sequence[PairedTest]) -> List[PairedTest]:
    """The tests with ``p_adj`` set by Holm's correction across all of them (one report's family)."""
    return adjust_p(tests)


def outcome(test: PairedTest, higher_is_better: Optional[bool] = True, alpha: float = ALPHA,
            p: Optional[float] = None) -> str:
    """The verdict as a code: ``ahead`` / ``behind`` (of the baseline; ``above`` / ``below`` zero when
    ``higher_is_better`` is None), ``not distinguishable``, ``one seed`` or ``not run``.

    Decided on ``p`` when given (e.g. the sign-flip test's adjusted p), else on the t-test's adjusted p where
    :func:`adjust` has set it, else on its raw p.
    """
    if test.mean is None:
        return 'not run'
    if test.n < 2:
        return 'one seed'
    if p is None:
        p = test.p_adj if test.p_adj is not None else test.p
    if p is None or p >= alpha or test.mean == 0:
        return 'not distinguishable'
    if higher_is_better is None:
        return 'above' if test.mean > 0 else 'below'
    return 'ahead' if (test.mean > 0) == higher_is_better else 'behind'


def verdict(test: PairedTest, higher_is_better: Optional[bool] = True, alpha: float = ALPHA, digits: int = 2,
            interval: bool = True, p: Optional[float] = None, p_name: str = 'adjusted p') -> str:
    """The verdict in words, e.g. ``ahead of the baseline (adjusted p 0.012)`` or ``not distinguishable with 3
    seeds (95% CI -3.50 to +1.29)``; ``interval=False`` leaves out the parenthesis (a table that has the numbers
    in other columns). ``p`` / ``p_name``: the p that decides and its name, as in :func:`outcome`."""
    code = outcome(test, higher_is_better, alpha, p)
    if code == 'not run':
        return 'not run'
    if code == 'one seed':
        return 'one seed: no test'
    if code == 'not distinguishable':
        words = f'not distinguishable with {test.n} seeds'
        return words + (f' ({CONFIDENCE:.0%} CI {test.ci_low:+.{digits}f} to {test.ci_high:+.{digits}f})'
                        if interval else '')
    words = {'ahead': 'ahead of the baseline', 'behind': 'behind the baseline', 'above': 'above zero',
             'below': 'below zero'}[code]
    if p is not None:
        return words + (f' ({p_name} {format_p(p)})' if interval else '')
    adjusted = test.p_adj is not None
    p = test.p_adj if adjusted else test.p
    return words + (f' ({"adjusted p" if adjusted else "p"} {format_p(p)})' if interval else '')


def format_p(p: Optional[float]) -> str:
    """A p value for a table: three decimals, or two significant digits below 0.001."""
    if p is None:
        return '-'
    return f'{p:.2g}' if p < 0.001 else f'{p:.3f}'


def detectable_difference(std: Optional[float], n: int, alpha: float = ALPHA, divisor: int = 1) -> Optional[float]:
    """The smallest |mean difference| that ``n`` seeds with this standard deviation of the differences would find
    at two-sided ``p < alpha / divisor``: ``t_crit(n - 1) * std / sqrt(n)`` (None for fewer than two seeds).

    ``divisor`` 1 is the test on its own; Holm tests the comparison of rank r (by p) among m at
    ``alpha / (m - r + 1)``: pass :func:`holm_divisors`' entry for it.
    """
    if std is None or n < 2:
        return None
    return float(_st.t.ppf(1 - alpha / (2 * divisor), n - 1)) * std / math.sqrt(n)


def power_t(effect: float, std: float, n: int, alpha: float = ALPHA, divisor: int = 1) -> float:
    """The power of the two-sided paired t-test with ``n`` seeds to find a true mean difference ``effect`` when the
    differences have standard deviation ``std``, at level ``alpha / divisor``: the non-central t distribution with
    ``n - 1`` degrees of freedom and non-centrality ``effect / (std / sqrt(n))``."""
    if n < 2:
        return 0.0
    if std <= 0:
        return 1.0 if effect != 0 else alpha / divisor
    df = n - 1
    crit = float(_st.t.ppf(1 - alpha / (2 * divisor), df))
    nc = abs(effect) / (std / math.sqrt(n))
    upper = float(_st.nct.sf(crit, df, nc))
    # the wrong-sign tail is below 1e-9 wherever scipy's series fails (nan at few degrees of freedom, large nc)
    lower = float(_st.nct.cdf(-crit, df, nc))
    if math.isnan(upper):
        upper = float(1 - _st.nct.cdf(crit, df, nc))
    return min(1.0, upper + (0.0 if math.isnan(lower) else lower))


def detectable_at_power(std: Optional[float], n: int, alpha: float = ALPHA, divisor: int = 1,
                        power: float = POWER) -> Optional[float]:
    """The smallest true |mean difference| that ``n`` seeds find with probability ``power`` (two-sided paired t-test
    at ``alpha / divisor``, differences of standard deviation ``std``); None for fewer than two seeds.

    About 1.3-1.4 times :func:`detectable_difference` (the significance threshold, where the power is about 50%).
    """
    if std is None or n < 2:
        return None
    if std == 0:
        return 0.0
    from scipy.optimize import brentq
    hi = std
    while power_t(hi, std, n, alpha, divisor) < power:
        hi *= 2
    return float(brentq(lambda e: power_t(e, std, n, alpha, divisor) - power, 0.0, hi, xtol=1e-10 * std))


def seeds_for_power(effect: float, std: float, alpha: float = ALPHA, divisor: int = 1, power: float = POWER,
                    most: int = 100_000) -> int:
    """The fewest seeds (at least 2) whose paired t-test finds a true mean difference ``effect`` with probability
    ``power`` at ``alpha / divisor``, when the differences have standard deviation ``std``.

    Raises:
        ValueError: ``effect`` is 0, ``std`` negative, or more than ``most`` seeds would be needed.
    """
    if effect == 0:
        raise ValueError('effect must be non-zero: no number of seeds finds a zero difference')
    if std < 0:
        raise ValueError(f'std must be >= 0, got {std}')
    n = 2
    while power_t(effect, std, n, alpha, divisor) < power:
        n += 1
        if n > most:
            raise ValueError(f'more than {most} seeds needed for effect {effect} at std {std}')
    return n


def sign_flip_power(effect: float, std: float, n: int, alpha: float = ALPHA, divisor: int = 1, sims: int = 4000,
                    patterns: int = 4000, seed: int = 0) -> float:
    """The power of the sign-flip test (:func:`sign_flip_test`) by simulation: ``sims`` sets of ``n`` normal
    differences (mean ``effect``, standard deviation ``std``), each tested against ``patterns`` random sign
    patterns (Monte Carlo p, ``(1 + hits) / (1 + patterns)``), at level ``alpha / divisor``. Reproducible from
    ``seed``; the standard error of the estimate is about ``sqrt(power (1 - power) / sims)`` (0.006 at 80%).
    """
    if n < 2:
        return 0.0
    rng = np.random.default_rng(seed)
    d = rng.normal(effect, std, size=(n, sims))
    signs = (rng.integers(0, 2, size=(patterns, n)) * 2 - 1).astype(np.float64)
    observed = np.abs(d.sum(axis=0))
    hits = np.zeros(sims)
    for lo in range(0, patterns, 1000):
        hits += (np.abs(signs[lo:lo + 1000] @ d) >= observed - 1e-12).sum(axis=0)
    p = (1 + hits) / (1 + patterns)
    return float(np.mean(p < alpha / divisor))


@dataclass(frozen=True)
class Detectable:
    """What ``n`` seeds can settle at the observed spread of one comparison, planned at :data:`POWER`.

    Attributes:
        n: Seeds.
        std: Observed standard deviation of the per-seed differences.
        unadjusted: Smallest true |mean| found with 80% power by the test on its own (p < 0.05).
        holm: Smallest true |mean| found with 80% power at the Holm threshold of this comparison's rank in its family.
        divisor: That rank's Holm divisor (threshold 0.05 / divisor).
        power: The power these differences are quoted at (0.8).
    """
    n: int
    std: Optional[float]
    unadjusted: Optional[float]
    holm: Optional[float]
    divisor: Optional[int]
    power: float = POWER

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


def detectable(tests: Sequence[PairedTest], alpha: float = ALPHA, power: float = POWER) -> List[Detectable]:
    """:class:`Detectable` of every test of one family (Holm ranks by their raw p), at ``power``."""
    divs = holm_divisors([t.p for t in tests])
    return [Detectable(t.n, t.std, detectable_at_power(t.std, t.n, alpha, power=power),
                       detectable_at_power(t.std, t.n, alpha, d, power) if d else None, d, power)
            for t, d in zip(tests, divs)]


def table_cells(test: PairedTest, digits: int = 2) -> List[str]:
    """The cells of one test in a markdown table: mean ± sd, the 95% CI, n, p, adjusted p, same sign."""
    if test.mean is None:
        return ['not run', '-', '0', '-', '-', '0/0']
    sd = '' if test.std is None else f' ± {test.std:.{digits}f}'
    ci = '-' if test.ci_low is None else f'{test.ci_low:+.{digits}f} to {test.ci_high:+.{digits}f}'
    return [f'{test.mean:+.{digits}f}{sd}', ci, str(test.n), format_p(test.p), format_p(test.p_adj),
            f'{test.same_sign}/{test.n}']


TABLE_HEAD = 'mean ± sd | 95% CI | n | p | adjusted p | same sign'
TABLE_HEAD_BOTH = 'mean ± sd | 95% CI | n | t-test p | adjusted | sign-flip p | adjusted | same sign'


def table_cells_both(test: PairedTest, flip: SignFlipTest, digits: int = 2) -> List[str]:
    """The cells of one difference under :data:`TABLE_HEAD_BOTH`: the t-test's numbers with the sign-flip test's p
    and adjusted p beside them (ties counted in the last cell)."""
    cells = table_cells(test, digits)
    same = cells[5] + (f' ({test.ties} tied)' if test.ties else '')
    return cells[:5] + [format_p(flip.p), format_p(flip.p_adj), same]


def machine_sentence(machines: Sequence[Mapping[str, Any]], without: int = 0) -> str:
    """Where numbers were measured (the ``machine`` records of runs, :func:`stepsnet.utils.provenance.machine_info`)
    and what that means for reproducing them."""
    if not machines:
        head = 'Machine not recorded (these runs were made before result files recorded it).'
    else:
        def one(m: Mapping[str, Any]) -> str:
            return (f'{m.get("cpu")} ({m.get("cpu_count")} CPUs), {m.get("torch_threads")} torch thread(s), torch '
                    f'{m.get("torch")}, BLAS {m.get("blas")}, CPU capability {m.get("cpu_capability")}')
        head = ('Machine: ' if len(machines) == 1 else f'Machines ({len(machines)}): ') + '; '.join(map(one, machines))
        head += f'; {without} run(s) without a record.' if without else '.'
    return head + ' Numbers are bit-exact on one machine at a fixed thread count, not across CPUs.'


def format_test(test: PairedTest, digits: int = 2) -> str:
    """One line of every number of a test: ``+0.93 ± 0.58, 95% CI -0.51 to +2.37, n 3, p 0.11, adjusted p 0.44,
    3/3 seeds the same way``."""
    if test.mean is None:
        return 'not run'
    s = f'{test.mean:+.{digits}f}'
    if test.std is None:
        return s + f', n {test.n}'
    s += f' ± {test.std:.{digits}f}, {CONFIDENCE:.0%} CI {test.ci_low:+.{digits}f} to {test.ci_high:+.{digits}f}'
    s += f', n {test.n}, p {format_p(test.p)}'
    if test.p_adj is not None:
        s += f', adjusted p {format_p(test.p_adj)}'
    return s + f', {test.same_sign}/{test.n} seeds the same way'
