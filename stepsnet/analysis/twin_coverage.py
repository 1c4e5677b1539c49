"""The coverage of the generic Steps twins (:mod:`stepsnet.models.generic_twins`): every timm configuration that a
family's builder makes, twinned on the meta device (no memory, no weights) and counted beside its baseline with
:mod:`stepsnet.analysis.complexity` (parameters, and multiply-adds of one forward pass at the baseline's input size),
or the reason the mechanism refuses it. A configuration is *within parity* when its twin is within 0.5% of the
parameters and 3% of the FLOPs. Nothing is typed in: the families, names, statuses and numbers all come from the code.

``scripts/update_twin_coverage.py`` writes the table into docs/models.md; ``stepsnet models --coverage`` prints it.
"""
import sys
from dataclasses import dataclass
from typing import List, Optional, Sequence

from stepsnet.analysis.complexity import count_macs, count_params
from stepsnet.models.generic_families import GENERIC_FAMILIES, family_configs
from stepsnet.models.twins import meta_pair

__all__ = ['CoverageRow', 'coverage_row', 'coverage', 'render_coverage', 'row_markdown', 'PARAMS_TOL', 'FLOPS_TOL']

PARAMS_TOL, FLOPS_TOL = 0.005, 0.03


@dataclass
class CoverageRow:
    """One timm configuration of a generic family: its twin's plans and parity, or why it has no twin."""
    family: str
    name: str
    plans: str = ''
    params: Optional[tuple] = None
    macs: Optional[tuple] = None
    reason: str = ''

    @property
    def twinned(self) -> bool:
        return self.params is not None

    def delta(self, pair: tuple) -> float:
        return (pair[1] - pair[0]) / pair[0]

    @property
    def within_parity(self) -> bool:
        return (self.twinned and abs(self.delta(self.params)) <= PARAMS_TOL
                and abs(self.delta(self.macs)) <= FLOPS_TOL)


def coverage_row(family: str, name: str) -> CoverageRow:
    """Twin ``name`` on the meta device and count it beside its baseline (a ValueError is a refusal)."""
    try:
        base, twin = meta_pair(name)
    except ValueError as e:
        return CoverageRow(family, name, reason=str(e).split('\n')[0])
    for m in (base, twin):  # CaiT's class token enters blocks as an input: FlopCounterMode would hook its gradient
        m.requires_grad_(False)
    size = tuple(base.pretrained_cfg['input_size'])
    plans = ' / '.join(str(p) for k, p in twin.plans.items() if p.num_steps > 1)
    return CoverageRow(family, name, plans, (count_params(base), count_params(twin)),
                       (count_macs(base, size), count_macs(twin, size)))


def coverage(only: Sequence[str] = (), families: Sequence[str] = (), progress: bool = True) -> List[CoverageRow]:
    """The rows of every configuration of every family (or of ``families``, or only the configurations ``only``);
    ``progress`` prints each name on stderr as it is counted.

    Raises:
        ValueError: A name of ``families`` is not a generic family.
    """
    unknown = sorted(set(families) - {f.name for f in GENERIC_FAMILIES})
    if unknown:
        raise ValueError(f'no generic family named {", ".join(unknown)}; expected one of '
                         f'{", ".join(f.name for f in GENERIC_FAMILIES)}')
    rows = []
    for family in GENERIC_FAMILIES:
        if families and family.name not in families:
            continue
        for name in family_configs(family):
            if not only or name in only:
                rows.append(coverage_row(family.name, name))
                if progress:
                    print(f'{name}: {"refused" if not rows[-1].twinned else "ok"}', file=sys.stderr, flush=True)
    return rows


def render_coverage(rows: Sequence[CoverageRow]) -> str:
    """A summary per family, then one row per configuration."""
    head = ['family', 'timm configurations', 'twinned', 'within parity', 'refused']
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    families = list(dict.fromkeys(r.family for r in rows))
    for f in families + ['all']:
        sel = [r for r in rows if f == 'all' or r.family == f]
        cells = [f'**{f}**' if f == 'all' else f, str(len(sel)), str(sum(r.twinned for r in sel)),
                 str(sum(r.within_parity for r in sel)), str(sum(not r.twinned for r in sel))]
        lines.append('| ' + ' | '.join(cells) + ' |')
    lines += ['', '<details><summary>Every configuration</summary>', '',
              '| family | timm configuration | status | Δ params | Δ FLOPs | twin plans (width x blocks) or reason |',
              '|---|---|---|---|---|---|']
    lines += [row_markdown(r) for r in rows]
    lines += ['', '</details>']
    return '\n'.join(lines) + '\n'


def row_markdown(r: CoverageRow) -> str:
    """One configuration's row of the table: family, name, status, Δ params, Δ FLOPs, plans (or the reason)."""
    if r.twinned:
        status = 'within parity' if r.within_parity else 'twinned'
        cells = [r.family, f'`{r.name}`', status, f'{100 * r.delta(r.params):+.2f}%',
                 f'{100 * r.delta(r.macs):+.2f}%', r.plans]
    else:
        cells = [r.family, f'`{r.name}`', 'refused', '', '', r.reason.replace('|', '\\|')]
    return '| ' + ' | '.join(cells) + ' |'
