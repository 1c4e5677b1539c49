"""What every result table of the docs shares: where the committed result files are, reading them, and the cells.

Nothing here computes a statistic: a cell formats a :class:`stepsnet.stats.PairedTest` or
:class:`stepsnet.stats.SignFlipTest` that someone else computed. The paths are always taken from the repository root
the caller passes (an installed package holds no ``docs/figures``).
"""
from __future__ import annotations

import csv
import json
import pathlib
from collections import defaultdict
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

from stepsnet import stats
from stepsnet.stats import PairedTest, SignFlipTest, format_p

__all__ = ['MINUS', 'figures_dir', 'analyses_dir', 'check_root', 'existing', 'read_text', 'read_json', 'read_csv',
           'by_model', 'signed', 'mean_std', 'diff_cell', 'diff_mean_sd', 'ci_cell', 'p_cells', 'verdict_cell',
           'decide', 'floor_note', 'short_test']

MINUS = '−'
PathLike = Union[str, pathlib.Path]


# ------------------------------------------------------------------------------------------------------ files

def figures_dir(root: PathLike) -> pathlib.Path:
    """``docs/figures`` of the repository at ``root``: every committed result file."""
    return pathlib.Path(root) / 'docs' / 'figures'


def analyses_dir(root: PathLike) -> pathlib.Path:
    """``docs/figures/analyses`` of the repository at ``root``."""
    return figures_dir(root) / 'analyses'


def check_root(root: PathLike) -> pathlib.Path:
    """``root`` as a path, once it is known to hold ``docs/`` (the documents and their result files).

    Raises ``FileNotFoundError`` naming the folder otherwise."""
    root = pathlib.Path(root)
    if not (root / 'docs').is_dir():
        raise FileNotFoundError(f'{root} is not the repository root: it has no docs/ folder (the documents and the '
                                'result files under docs/figures/ they are rendered from)')
    return root


def existing(path: PathLike) -> pathlib.Path:
    """``path``, once it is known to be a file; ``FileNotFoundError`` naming it where it is missing."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'{path}: no such file; the table is rendered from it (record it again, or restore '
                                'the committed copy)')
    return path


def read_text(path: PathLike) -> str:
    """The text of a committed file (:func:`existing`)."""
    return existing(path).read_text(encoding='utf-8')


def read_json(path: PathLike) -> Any:
    """A committed JSON file (a comparison's ``results.json``, a dry run's record)."""
    return json.loads(read_text(path))


def read_csv(path: PathLike) -> List[Dict[str, str]]:
    """The rows of a committed CSV file, one dict per row (the values as strings)."""
    with open(existing(path), newline='', encoding='utf-8') as f:
        return list(csv.DictReader(f))


# ------------------------------------------------------------------------------------------------------ cells

def signed(x: float, digits: int) -> str:
    """``x`` with its sign, the minus as the typographic ``−``."""
    s = f'{x:+.{digits}f}'
    return s.replace('-', MINUS)


def mean_std(values: Sequence[float], digits: int = 2) -> str:
    """mean ± sample std (the std left out for a single value)."""
    mean, std, _ = stats.mean_sd(values)
    if mean is None:
        return 'not run'
    return f'{mean:.{digits}f}' if std is None else f'{mean:.{digits}f} ± {std:.{digits}f}'


def diff_cell(t: PairedTest, digits: int = 2) -> str:
    """``+0.93 (−0.51 to +2.37)``: the mean paired difference and its 95% interval."""
    if t.mean is None:
        return 'not run'
    if t.ci_low is None:
        return f'{signed(t.mean, digits)} (n={t.n})'
    return f'{signed(t.mean, digits)} ({signed(t.ci_low, digits)} to {signed(t.ci_high, digits)})'


def diff_mean_sd(t: PairedTest, digits: int) -> str:
    """``+0.188 ± 0.022``: the mean paired difference and the standard deviation of the per-seed differences."""
    if t.mean is None:
        return 'not run'
    return signed(t.mean, digits) + ('' if t.std is None else f' ± {t.std:.{digits}f}')


def ci_cell(t: PairedTest, digits: int) -> str:
    """The 95% interval of the mean difference, ``-`` where there is none."""
    return '-' if t.ci_low is None else f'{signed(t.ci_low, digits)} to {signed(t.ci_high, digits)}'


def p_cells(t: PairedTest, s: SignFlipTest) -> List[str]:
    """The t-test's p and adjusted p, then the sign-flip test's."""
    return [format_p(t.p), format_p(t.p_adj), format_p(s.p), format_p(s.p_adj)]


def verdict_cell(code: str, n: int) -> str:
    """An outcome code (:func:`stepsnet.stats.outcome`) for a table: a verdict in bold, else what stopped it."""
    if code in ('ahead', 'behind', 'above', 'below'):
        return f'**{code}**'
    if code == 'not distinguishable':
        return f'not distinguishable ({n} seeds)'
    return code


def decide(t: PairedTest, s: SignFlipTest, higher_is_better: Optional[bool]) -> str:
    """The outcome of an exploratory difference: both tests' adjusted p must be below 0.05 (rule ``both``)."""
    return stats.outcome(t, higher_is_better, p=stats.deciding_p(t, s, 'both'))


def floor_note(flips: Sequence[SignFlipTest], alpha: float = stats.ALPHA, unit: str = 'seeds') -> str:
    """What the seeds (or models) allow: where no sign-flip p can reach ``alpha`` even before adjustment, say so."""
    floors = [s.min_p for s in flips if s.min_p is not None]
    if not floors or min(floors) < alpha:
        return ''
    n = max(s.n - s.ties for s in flips if s.min_p is not None)
    if any(s.ties for s in flips if s.min_p is not None and s.n - s.ties == n):
        unit = f'untied {unit}'  # a tie (|d| within the tolerance) takes no sign
    return (f' With {n} {unit} the sign-flip p cannot go below {min(floors):.2g} even before adjustment, so no '
            'difference here can get a verdict.')


def short_test(t: PairedTest, s: SignFlipTest, digits: int = 1) -> str:
    """One cell of an analysis table: the difference with its interval, both adjusted p and the verdict."""
    return (f'{diff_cell(t, digits)}, p {format_p(t.p_adj)} / {format_p(s.p_adj)}: '
            f'{verdict_cell(decide(t, s, None), t.n)}')


def by_model(rows: Sequence[Mapping[str, str]], key: str) -> Dict[str, Dict[str, Mapping[str, str]]]:
    """The rows of an analysis CSV as ``{row[key]: {row['model']: row}}``."""
    out: Dict[str, Dict[str, Mapping[str, str]]] = defaultdict(dict)
    for row in rows:
        out[row[key]][row['model']] = row
    return out
