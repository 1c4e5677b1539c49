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

__all__ = ['ALPHA', 'CONFIDENCE', 'PairedTest', 'paired_test', 'paired_test_arms', 'holm', 'holm_divisors',
           'adjust', 'outcome', 'verdict', 'detectable_difference', 'Detectable', 'detectable', 'format_test',
           'format_p', 'table_cells', 'TABLE_HEAD', 'machine_sentence']

ALPHA = 0.05  # family-wise error of one report (Holm)
CONFIDENCE = 0.95  # the confidence level of the intervals


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
        same_sign: Seeds whose difference has the sign of the mean (a zero difference counts for neither side).
        p_adj: p after Holm's correction across the comparisons of one report (None until :func:`adjust`).
        values: The per-seed differences.
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
    same = sum(1 for v in xs if v != 0 and (v > 0) == (mean > 0)) if mean != 0 else 0
    if n == 1:
        return PairedTest(1, mean, None, None, None, None, None, same, values=xs)
    std = float(arr.std(ddof=1))
    se = std / math.sqrt(n)
    if se == 0:
        t, p = None, (1.0 if mean == 0 else 0.0)
        return PairedTest(n, mean, std, mean, mean, t, p, same, values=xs)
    t = mean / se
    p = float(2 * _st.t.sf(abs(t), n - 1))
    half = float(_st.t.ppf(0.5 + CONFIDENCE / 2, n - 1)) * se
    return PairedTest(n, mean, std, mean - half, mean + half, t, p, same, values=xs)


def paired_test_arms(arm: Mapping[Any, float], baseline: Mapping[Any, float]) -> PairedTest:
    """:func:`paired_test` of ``arm[s] - baseline[s]`` over the seeds ``s`` both have (dicts seed -> metric)."""
    return paired_test([arm[s] - baseline[s] for s in arm if s in baseline])


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
    return [dataclasses.replace(t, p_adj=a) for t, a in zip(tests, holm([t.p for t in tests]))]


def outcome(test: PairedTest, higher_is_better: Optional[bool] = True, alpha: float = ALPHA) -> str:
    """The verdict as a code: ``ahead`` / ``behind`` (of the baseline; ``above`` / ``below`` zero when
    ``higher_is_better`` is None), ``not distinguishable``, ``one seed`` or ``not run``.

    Decided on the adjusted p where :func:`adjust` has set it, else on the raw p.
    """
    if test.mean is None:
        return 'not run'
    if test.n < 2:
        return 'one seed'
    p = test.p_adj if test.p_adj is not None else test.p
    if p is None or p >= alpha or test.mean == 0:
        return 'not distinguishable'
    if higher_is_better is None:
        return 'above' if test.mean > 0 else 'below'
    return 'ahead' if (test.mean > 0) == higher_is_better else 'behind'


def verdict(test: PairedTest, higher_is_better: Optional[bool] = True, alpha: float = ALPHA, digits: int = 2,
            interval: bool = True) -> str:
    """The verdict in words, e.g. ``ahead of the baseline (adjusted p 0.012)`` or ``not distinguishable with 3
    seeds (95% CI -3.50 to +1.29)``; ``interval=False`` leaves out the parenthesis (a table that has the numbers
    in other columns)."""
    code = outcome(test, higher_is_better, alpha)
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


@dataclass(frozen=True)
class Detectable:
    """What ``n`` seeds can settle at the observed spread of one comparison.

    Attributes:
        n: Seeds.
        std: Observed standard deviation of the per-seed differences.
        unadjusted: Smallest |mean| that reaches p < 0.05 on its own.
        holm: Smallest |mean| that reaches the Holm threshold of this comparison's rank in its report.
        divisor: That rank's Holm divisor (threshold 0.05 / divisor).
    """
    n: int
    std: Optional[float]
    unadjusted: Optional[float]
    holm: Optional[float]
    divisor: Optional[int]

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


def detectable(tests: Sequence[PairedTest], alpha: float = ALPHA) -> List[Detectable]:
    """:class:`Detectable` of every test of one report (Holm ranks by their raw p)."""
    divs = holm_divisors([t.p for t in tests])
    return [Detectable(t.n, t.std, detectable_difference(t.std, t.n, alpha),
                       detectable_difference(t.std, t.n, alpha, d) if d else None, d) for t, d in zip(tests, divs)]


def table_cells(test: PairedTest, digits: int = 2) -> List[str]:
    """The cells of one test in a markdown table: mean ± sd, the 95% CI, n, p, adjusted p, same sign."""
    if test.mean is None:
        return ['not run', '-', '0', '-', '-', '0/0']
    sd = '' if test.std is None else f' ± {test.std:.{digits}f}'
    ci = '-' if test.ci_low is None else f'{test.ci_low:+.{digits}f} to {test.ci_high:+.{digits}f}'
    return [f'{test.mean:+.{digits}f}{sd}', ci, str(test.n), format_p(test.p), format_p(test.p_adj),
            f'{test.same_sign}/{test.n}']


TABLE_HEAD = 'mean ± sd | 95% CI | n | p | adjusted p | same sign'


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
