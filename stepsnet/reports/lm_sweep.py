"""The LM sweep's statistics, once: every cell's losses, its paired differences and one family of tests.

The sweep (``benchmarks/lm_sweep.yaml``, run by :mod:`stepsnet.compare.lm_sweep`, whose command line is
``benchmarks/lm_sweep.py``; the Llama pair's ``benchmarks/llama_compare.yaml`` has the same format) trains a few models
per *cell* (a step count, a learning rate or a grid of them, a set of seeds) in *roles*: ``baseline`` (the residual
model), ``steps`` (its Steps twin) and, in some cells, ``control`` (a plain residual model as deep as the twin). Two
programs report it: the sweep's own report (``sweep.md``, ``sweep.json``, written by
:mod:`stepsnet.reports.lm_sweep_report`) and the result tables of the docs (``scripts/render_results.py``). Both take
every number from :func:`analyse`, so that they test the same differences and adjust them the same way; when they
computed this each on its own, they disagreed on what the family was.

One rule for the family of tests:

* every cell gives the paired differences ``steps − baseline``, ``control − baseline`` and ``steps − control`` of
  the final validation loss, per seed finished by both models (a seed fixes the initialisation and the batches of
  every model, so the two losses of a seed are paired);
* a difference two cells share (the same two models at the same step count, rates and seeds: the same runs, so the
  same per-seed values, e.g. the depth-8 cell and the learning-rate cell at its rate) is *one* test: Holm counts it
  once and both cells show it. Counting it twice would test one result twice and make every other p larger;
* a cell with a grid of rates is also compared at each model's own best rate (lowest mean loss over seeds). Those
  rates are chosen after seeing the grid, so the comparison is exploratory and is labelled so; it is *in* the Holm
  family, as one more look at the same data, not a free test beside it;
* the sanity cell (a Steps model with ``num_steps: 1``, which is the residual model) is exact by construction: its
  difference must be 0 on every seed. It checks the implementation, compares nothing, and stays outside the family.

Each difference of the family gets the paired t-test and the exact sign-flip test (:func:`stepsnet.stats.test_family`:
each Holm-adjusted across the family), and a verdict by rule ``both`` (:data:`stepsnet.stats.RULES`): "ahead" /
"behind" only where both adjusted p are below 0.05, so that no verdict rests on the normality of three losses. A
lower loss is better, so "behind" means the first model has the higher loss.

Example::

    sweep = analyse(protocol, read_losses('docs/figures/lm/sweep.csv'), config_lr=2e-3)
    for row in sweep.rows():
        print(row['place'], row['what'], row['p_adj'], row['sign_flip']['p_adj'], row['verdict'])
    print(method_note(sweep))
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

import numpy as np

from stepsnet import stats

__all__ = ['PAIRS', 'ROLE_NAMES', 'RULE', 'HIGHER_IS_BETTER', 'FAMILY', 'SANITY', 'Runs', 'Losses', 'Difference',
           'Cell', 'BestRate', 'Sweep', 'losses_from_rows', 'read_losses', 'cell_rates', 'is_sanity', 'analyse',
           'method_note']

PAIRS = (('steps', 'baseline'), ('control', 'baseline'), ('steps', 'control'))  # first − second, where a cell has both
ROLE_NAMES = {'baseline': 'baseline', 'steps': 'Steps', 'control': 'control'}
RULE = 'both'  # an exploratory report: both tests must agree (stepsnet.stats.RULES)
HIGHER_IS_BETTER = False  # a validation loss
FAMILY = 'sweep'  # the Holm family of the sweep's comparisons
SANITY = 'sanity'  # the check of the implementation, outside the family


@dataclass(frozen=True)
class Runs:
    """The runs of one model of the sweep at one step count and learning rate (one run per seed)."""
    model_key: str
    max_iters: int
    lr: float

    @property
    def key(self) -> Tuple[str, int, float]:
        return (self.model_key, self.max_iters, self.lr)


# (model_key, max_iters, lr) -> seed -> final validation loss
Losses = Mapping[Tuple[str, int, float], Mapping[int, float]]


def losses_from_rows(rows: Iterable[Mapping[str, Any]]) -> Dict[Tuple[str, int, float], Dict[int, float]]:
    """The losses of per-run rows (``model_key``, ``max_iters``, ``lr``, ``seed``, ``val_loss``: the columns of a
    sweep's ``sweep.csv``, as strings or numbers)."""
    out: Dict[Tuple[str, int, float], Dict[int, float]] = {}
    for row in rows:
        key = (str(row['model_key']), int(row['max_iters']), float(row['lr']))
        out.setdefault(key, {})[int(row['seed'])] = float(row['val_loss'])
    return out


def read_losses(path: str) -> Dict[Tuple[str, int, float], Dict[int, float]]:
    """The losses of a sweep's CSV (one row per finished run); a missing file is a sweep that has not run yet."""
    if not os.path.isfile(path):
        return {}
    with open(path, newline='', encoding='utf-8') as f:
        return losses_from_rows(csv.DictReader(f))


def cell_rates(cell: Mapping[str, Any], config_lr: float) -> List[float]:
    """The learning rates a cell trains at: its ``lr`` (one value or a list), else the sweep config's rate, so that a
    run the cell shares with a learning-rate cell is the same run."""
    lr = cell.get('lr')
    if lr is None:
        return [float(config_lr)]
    return [float(v) for v in lr] if isinstance(lr, list) else [float(lr)]


def is_sanity(protocol: Mapping[str, Any], cell: Mapping[str, Any]) -> bool:
    """Whether ``cell`` is a sanity cell: its Steps model has one step (``num_steps: 1``), so it is the residual
    model and every paired difference to the baseline is exactly 0 by construction."""
    key = cell['roles'].get('steps')
    if key is None:
        return False
    return (protocol['models'][key].get('model_kwargs') or {}).get('num_steps') == 1


@dataclass(frozen=True)
class Difference:
    """One paired difference of final validation loss, ``first − second``, over the seeds both models finished.

    Attributes:
        first: Role of the first model (``steps``, ``control``).
        second: Role of the second model (``baseline``, ``control``).
        first_runs: The first model's runs.
        second_runs: The second model's runs.
        seeds: The seeds paired, ascending.
        values: Per seed, the first model's loss minus the second's.
        test: The paired t-test; ``p_adj`` is Holm across the family (None outside it).
        sign_flip: The exact sign-flip test; ``p_adj`` likewise.
        family: :data:`FAMILY` (the Holm family) or :data:`SANITY` (exact by construction, outside it).
    """
    first: str
    second: str
    first_runs: Runs
    second_runs: Runs
    seeds: Tuple[int, ...]
    values: Tuple[float, ...]
    test: stats.PairedTest
    sign_flip: stats.SignFlipTest
    family: str
    rule: str = RULE

    @property
    def key(self) -> Tuple[Runs, Runs, Tuple[int, ...]]:
        """What makes two differences one: the same runs on both sides and the same seeds."""
        return (self.first_runs, self.second_runs, self.seeds)

    @property
    def what(self) -> str:
        return f'{ROLE_NAMES.get(self.first, self.first)} − {ROLE_NAMES.get(self.second, self.second)}'

    @property
    def p(self) -> Optional[float]:
        """The adjusted p that decides the verdict under :attr:`rule` (None outside the family or without a test)."""
        if self.family != FAMILY:
            return None
        return stats.deciding_p(self.test, self.sign_flip, self.rule)

    @property
    def largest(self) -> Optional[float]:
        """The largest |difference| over the seeds (the sanity cell's check)."""
        return max(abs(v) for v in self.values) if self.values else None

    @property
    def outcome(self) -> str:
        """``behind`` (the first model has the higher loss) / ``ahead`` / ``not distinguishable`` / ``one seed`` /
        ``not run``; for the sanity cell ``identical`` or ``not identical``."""
        if self.family == SANITY:
            if not self.values:
                return 'not run'
            return 'identical' if all(v == 0 for v in self.values) else 'not identical'
        return stats.outcome(self.test, HIGHER_IS_BETTER, p=self.p)

    @property
    def verdict(self) -> str:
        """The outcome in words, naming the two models (the numbers are in the other columns of a table)."""
        code = self.outcome
        first, second = ROLE_NAMES.get(self.first, self.first), ROLE_NAMES.get(self.second, self.second)
        if code in ('ahead', 'behind'):
            return f'{first}: {"lower" if code == "ahead" else "higher"} loss than {second}'
        if code == 'identical':
            return f'identical on every seed ({len(self.values)}): exact by construction'
        if code == 'not identical':
            return f'not identical (largest |difference| {self.largest:.1e}): the one-step model is not the residual'
        return stats.verdict(self.test, HIGHER_IS_BETTER, interval=False, p=self.p)

    def to_dict(self) -> Dict[str, Any]:
        """Plain JSON types: the t-test's fields at the top level (as :func:`stepsnet.compare.judge` writes a
        difference), the sign-flip test under ``sign_flip``."""
        return dict(what=self.what, first=ROLE_NAMES.get(self.first, self.first),
                    second=ROLE_NAMES.get(self.second, self.second), first_model=self.first_runs.model_key,
                    second_model=self.second_runs.model_key, max_iters=self.first_runs.max_iters,
                    first_lr=self.first_runs.lr, second_lr=self.second_runs.lr, seeds=list(self.seeds),
                    **self.test.to_dict(), sign_flip=self.sign_flip.to_dict(), family=self.family,
                    outcome=self.outcome, verdict=self.verdict)


@dataclass
class Cell:
    """One cell of the sweep at one of its learning rates.

    Attributes:
        name: The cell's name in the protocol.
        lr: The learning rate of this row.
        lr_varies: The cell trains a grid of rates (its ``lr`` is a list).
        max_iters: Optimizer steps.
        seeds: The seeds the protocol plans for it.
        roles: Role -> model key.
        losses: Role -> seed -> final validation loss, for the seeds finished.
        differences: ``(first, second)`` -> :class:`Difference`, for the pairs of :data:`PAIRS` the cell has.
        sanity: The cell is a sanity cell (:func:`is_sanity`).
    """
    name: str
    lr: float
    lr_varies: bool
    max_iters: int
    seeds: Tuple[int, ...]
    roles: Dict[str, str]
    losses: Dict[str, Dict[int, float]]
    differences: Dict[Tuple[str, str], Difference]
    sanity: bool

    @property
    def label(self) -> str:
        """Where a difference is shown: the cell's name, with its rate when the cell trains a grid."""
        return f'{self.name}, lr {self.lr:g}' if self.lr_varies else self.name


@dataclass
class BestRate:
    """A cell with a grid of rates compared at each model's own best rate (exploratory: chosen after the grid).

    Attributes:
        cell: The cell's name.
        max_iters: Optimizer steps.
        rates: Role -> the rate with its lowest mean loss over the seeds finished there.
        losses: Role -> seed -> loss at that rate.
        difference: Steps at its best rate − baseline at its best rate, paired by seed (set by :func:`analyse`).
    """
    cell: str
    max_iters: int
    rates: Dict[str, float]
    losses: Dict[str, Dict[int, float]]
    difference: Optional[Difference] = None

    @property
    def label(self) -> str:
        return f'{self.cell}, each model at its own best rate'


@dataclass
class Sweep:
    """The sweep's cells, its best-rate comparisons and its family of tests (:func:`analyse`).

    Attributes:
        cells: Every cell at every rate, in protocol order.
        best_rates: The best-rate comparison of every cell with a grid of rates.
        family: The distinct differences of the Holm family, in report order (a shared one once).
        sanity: The differences of the sanity cells (outside the family).
        places: Difference key -> the labels of the cells (and best-rate comparisons) that show it.
    """
    cells: List[Cell]
    best_rates: List[BestRate]
    family: List[Difference]
    sanity: List[Difference]
    places: Dict[Tuple[Runs, Runs, Tuple[int, ...]], List[str]]

    @property
    def tested(self) -> int:
        """The differences Holm counts: the distinct ones with a p (at least two seeds)."""
        return sum(d.test.p is not None for d in self.family)

    def shared(self) -> List[Difference]:
        """The tested differences that more than one cell shows (one test each)."""
        return [d for d in self.family if d.test.p is not None and len(self.places[d.key]) > 1]

    def shown(self) -> List[Tuple[str, Any, Difference]]:
        """Every difference as a report shows it, ``(place, owner, difference)``: cell by cell (the owner a
        :class:`Cell`), then the best-rate comparisons (a :class:`BestRate`); a shared difference in each of its
        places."""
        out: List[Tuple[str, Any, Difference]] = []
        for c in self.cells:
            out += [(c.label, c, d) for d in c.differences.values()]
        return out + [(b.label, b, b.difference) for b in self.best_rates]

    def also_in(self, place: str, d: Difference) -> List[str]:
        """The other places that show the difference ``d`` shown at ``place`` (one test, counted once)."""
        return [p for p in self.places[d.key] if p != place]

    def rows(self) -> List[Dict[str, Any]]:
        """:meth:`shown` as plain JSON rows: the cell, its rate (None where each model is at its own best rate, whose
        ``rates`` are given), the difference (:meth:`Difference.to_dict`), whether it is exploratory, and where else
        the same test is shown."""
        rows = []
        for place, owner, d in self.shown():
            best = isinstance(owner, BestRate)
            extra = dict(rates=dict(owner.rates)) if best else {}
            rows.append(dict(cell=owner.cell if best else owner.name, lr=None if best else owner.lr, place=place,
                             **extra, **d.to_dict(), exploratory=best,
                             also_in=self.also_in(place, d)))
        return rows


def _pair(first: Runs, second: Runs, losses: Losses, seeds: Iterable[int]
          ) -> Tuple[Tuple[int, ...], Tuple[float, ...]]:
    """The seeds both runs finished, ascending, and per seed the first loss minus the second."""
    a, b = losses.get(first.key, {}), losses.get(second.key, {})
    paired = tuple(s for s in sorted(seeds) if s in a and s in b)
    return paired, tuple(a[s] - b[s] for s in paired)


def _finished(runs: Runs, losses: Losses, seeds: Iterable[int]) -> Dict[int, float]:
    """Seed -> loss of the runs finished among ``seeds``."""
    got = losses.get(runs.key, {})
    return {s: got[s] for s in sorted(seeds) if s in got}


def analyse(protocol: Mapping[str, Any], losses: Losses, config_lr: float, rule: Optional[str] = None) -> Sweep:
    """The sweep's cells, differences and tests, by the rule of this module.

    Args:
        protocol: The sweep file as read from YAML (``seeds``, ``models``, ``cells``; a cell's ``seeds`` and ``lr``
            are optional).
        losses: ``(model_key, max_iters, lr) -> seed -> final validation loss`` of the finished runs
            (:func:`read_losses`, :func:`losses_from_rows`); runs not finished are simply absent.
        config_lr: The rate of the sweep's ``config``, at which a cell without ``lr`` trains.
        rule: What decides a verdict (:data:`stepsnet.stats.RULES`): :data:`RULE` for an exploratory sweep; a
            protocol fixed before its runs keeps the test it named (the Llama pair's: ``t``).

    Returns:
        A :class:`Sweep`: each difference tested once, both tests Holm-adjusted across the family.
    """
    cells: List[Cell] = []
    bests: List[BestRate] = []
    # every difference where it is shown: (place, the cell or best-rate comparison showing it, pair, first runs,
    # second runs, seeds, values, sanity)
    items: List[Tuple[str, Any, Tuple[str, str], Runs, Runs, Tuple[int, ...], Tuple[float, ...], bool]] = []
    for cell in protocol['cells']:
        seeds = tuple(int(s) for s in cell.get('seeds', protocol['seeds']))
        iters, sanity = int(cell['max_iters']), is_sanity(protocol, cell)
        rates = cell_rates(cell, config_lr)
        runs_at = {lr: {role: Runs(key, iters, lr) for role, key in cell['roles'].items()} for lr in rates}
        for lr, runs in runs_at.items():
            c = Cell(cell['name'], lr, isinstance(cell.get('lr'), list), iters, seeds, dict(cell['roles']),
                     {role: _finished(r, losses, seeds) for role, r in runs.items()}, {}, sanity)
            cells.append(c)
            items += [(c.label, c, (a, b), runs[a], runs[b], *_pair(runs[a], runs[b], losses, seeds), sanity)
                      for a, b in PAIRS if a in runs and b in runs]
        if len(rates) < 2 or sanity or not {'baseline', 'steps'} <= set(cell['roles']):
            continue
        # each model at the rate of its lowest mean loss over the seeds finished there
        means = {role: {lr: float(np.mean(list(got.values()))) for lr in rates
                        if (got := _finished(runs_at[lr][role], losses, seeds))} for role in cell['roles']}
        if not (means['baseline'] and means['steps']):
            continue
        rates_best = {role: min(m, key=m.get) for role, m in means.items() if m}
        first, second = runs_at[rates_best['steps']]['steps'], runs_at[rates_best['baseline']]['baseline']
        b = BestRate(cell['name'], iters, rates_best,
                     {role: _finished(runs_at[lr][role], losses, seeds) for role, lr in rates_best.items()}, None)
        bests.append(b)
        items.append((b.label, b, ('steps', 'baseline'), first, second, *_pair(first, second, losses, seeds), False))
    # one test per distinct difference: the family in report order, a shared difference at its first place
    places: Dict[Tuple[Runs, Runs, Tuple[int, ...]], List[str]] = {}
    unique: Dict[Tuple[Runs, Runs, Tuple[int, ...]], Tuple[Tuple[str, str], Tuple[float, ...], bool]] = {}
    for place, _, pair, first, second, seeds, values, sanity in items:
        key = (first, second, seeds)
        places.setdefault(key, []).append(place)
        unique.setdefault(key, (pair, values, sanity))
    in_family = [k for k, (_, _, sanity) in unique.items() if not sanity]
    tests = dict(zip(in_family, stats.test_family([unique[k][1] for k in in_family])))
    made: Dict[Tuple[Runs, Runs, Tuple[int, ...]], Difference] = {}
    for key, (pair, values, sanity) in unique.items():
        t, s = tests[key] if key in tests else (stats.paired_test(values), stats.sign_flip_test(values))
        made[key] = Difference(pair[0], pair[1], key[0], key[1], key[2], values, t, s, SANITY if sanity else FAMILY,
                               rule or RULE)
    for _, owner, pair, first, second, seeds, _, _ in items:
        if isinstance(owner, Cell):
            owner.differences[pair] = made[(first, second, seeds)]
        else:
            owner.difference = made[(first, second, seeds)]
    return Sweep(cells, bests, [made[k] for k in in_family], [d for d in made.values() if d.family == SANITY],
                 places)


def _and(words: List[str]) -> str:
    return words[0] if len(words) == 1 else ', '.join(words[:-1]) + ' and ' + words[-1]


def method_note(sweep: Sweep) -> str:
    """How the sweep's differences are tested, in words, for the sentence under a table: the two tests, the size of
    the Holm family, the shared differences counted once, the exploratory best-rate comparison in the family, the
    sanity cell aside, the rule of the verdict, and what the seeds allow."""
    n = sweep.tested
    text = ('Each difference is tested twice, by the two-sided paired t-test and by the exact sign-flip test, and '
            f'each test\'s p is Holm-adjusted across the {n} distinct {"difference" if n == 1 else "differences"} of '
            'the family')
    shared = sweep.shared()
    clauses = []
    if shared:
        where = '; '.join(_and(sweep.places[d.key]) for d in shared)
        clauses.append(f'a difference two cells share (the same runs: {where}) is one test, counted once and shown in '
                       'each')
    if sweep.best_rates:
        clauses.append('the comparison at each model\'s own best rate is in the family and is exploratory (the rates '
                       'were chosen after seeing the grid)')
    if sweep.sanity:
        clauses.append('the sanity cell (`num_steps: 1`, exact by construction) is outside it')
    text += (': ' + '; '.join(clauses) if clauses else '') + '. '
    rule = sweep.family[0].rule if sweep.family else RULE
    if rule == 'both':
        text += ('A verdict ("ahead" / "behind": the first model has the lower / higher loss) needs both adjusted p '
                 f'below {stats.ALPHA:g}, the larger of the two decides; every other difference is "not '
                 'distinguishable" with its seeds.')
    else:
        text += (f'A verdict ("ahead" / "behind": the first model has the lower / higher loss) is decided by '
                 f'{stats.RULES[rule]}, as the protocol named it before its runs, at an adjusted p below '
                 f'{stats.ALPHA:g}; the other test is shown beside it.')
    floors = [d.sign_flip.min_p for d in sweep.family if d.sign_flip.min_p is not None]
    if floors and min(floors) >= stats.ALPHA and rule != 't':
        seeds = sorted({d.sign_flip.n - d.sign_flip.ties for d in sweep.family if d.sign_flip.min_p is not None})
        count = f'{seeds[0]}' if len(seeds) == 1 else f'at most {seeds[-1]}'
        text += (f' With {count} seeds the sign-flip p cannot go below {min(floors):.2g} even before adjustment, so '
                 'no difference here can get a verdict: the intervals and the t-test\'s p are what these seeds show.')
    return text
