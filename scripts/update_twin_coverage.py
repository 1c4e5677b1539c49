"""Regenerate the coverage table of the generic Steps twins in docs/models.md (between the twin-coverage markers).

Every timm configuration built by the builder of a family of :mod:`stepsnet.models.generic_twins` is twinned on the
meta device (no memory, no weights) and counted beside its baseline with :mod:`stepsnet.analysis.complexity`:
parameters, and multiply-adds of one forward pass at the baseline's input size. A configuration is *within parity*
when its twin is within 0.5% of the parameters and 3% of the FLOPs; one that cannot be twinned is listed with the
reason the mechanism gives. Nothing is typed in: the families, names, statuses and numbers all come from the code.

    python scripts/update_twin_coverage.py [docs/models.md] [--only NAME ...] [--family FAMILY ...]
"""
import argparse
import sys
from dataclasses import dataclass
from typing import List, Optional, Sequence

import timm
import torch

from stepsnet.analysis.complexity import count_macs, count_params
from stepsnet.models.generic_families import GENERIC_FAMILIES, family_configs
from stepsnet.models.twins import build_twin
from stepsnet.utils.docblocks import markers, write_block

BEGIN, END = markers('twin-coverage')
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
        twin = build_twin(name, device='meta')
    except ValueError as e:
        return CoverageRow(family, name, reason=str(e).split('\n')[0])
    base = timm.create_model(name, device='meta')
    for m in (base, twin):  # CaiT's class token enters blocks as an input: FlopCounterMode would hook its gradient
        m.requires_grad_(False)
    size = tuple(base.pretrained_cfg['input_size'])
    plans = ' / '.join(str(p) for k, p in twin.plans.items() if p.num_steps > 1)
    return CoverageRow(family, name, plans, (count_params(base), count_params(twin)),
                       (count_macs(base, size), count_macs(twin, size)))


def coverage(only: Sequence[str] = (), families: Sequence[str] = ()) -> List[CoverageRow]:
    rows = []
    for family in GENERIC_FAMILIES:
        if families and family.name not in families:
            continue
        for name in family_configs(family):
            if not only or name in only:
                rows.append(coverage_row(family.name, name))
                print(f'{name}: {"refused" if not rows[-1].twinned else "ok"}', file=sys.stderr, flush=True)
    return rows


def render(rows: Sequence[CoverageRow]) -> str:
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
    for r in rows:
        if r.twinned:
            status = 'within parity' if r.within_parity else 'twinned'
            cells = [r.family, f'`{r.name}`', status, f'{100 * r.delta(r.params):+.2f}%',
                     f'{100 * r.delta(r.macs):+.2f}%', r.plans]
        else:
            cells = [r.family, f'`{r.name}`', 'refused', '', '', r.reason.replace('|', '\\|')]
        lines.append('| ' + ' | '.join(cells) + ' |')
    lines += ['', '</details>']
    return '\n'.join(lines) + '\n'


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('path', nargs='?', default='docs/models.md')
    parser.add_argument('--only', nargs='*', default=(), help='count only these configurations (print, do not write)')
    parser.add_argument('--family', nargs='*', default=(),
                        help='count only the configurations of these families (print, do not write)')
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = coverage(args.only, args.family)
    if args.only or args.family:
        print(render(rows))
        return 0
    write_block(args.path, render(rows), BEGIN, END)
    return 0


if __name__ == '__main__':
    sys.exit(main())
