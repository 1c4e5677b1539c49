"""Write the runs of an earlier comparison's ``results.json`` into a comparison folder, as finished runs.

A comparison (``stepsnet compare`` / ``stepsnet analyze pilot``) reuses every run whose folder holds its results
(``OUT/<point>/<role>/seed<k>/results.json``, read by :func:`stepsnet.compare.read_result`). A committed
``results.json`` keeps each run's metric and training-set metric per seed, so the runs of an earlier report can
join a later comparison of the same recipe with more seeds, without being trained again::

    python scripts/import_runs.py docs/figures/analyses/pilot/results.json /work/pilot8 \
        --blocks 4 8 16 --role steps_compute=steps

What an imported run cannot carry is marked: its learning curve is empty (the report's curves show the runs that
were trained in the folder), its training time is its arm's mean over the earlier seeds, its machine is whatever
the earlier file recorded (``None``: not recorded), and ``imported_from`` names the file.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import List, Optional

from stepsnet.compare import ADAPTERS, SECTION
from stepsnet.engine import RESULTS


def import_runs(results_json: str, out: str, blocks: Optional[List[int]] = None, roles: Optional[dict] = None,
                seeds: Optional[List[int]] = None) -> List[str]:
    """Write ``OUT/<point>/<role>/seed<k>/results.json`` for every run of ``results_json``; return the paths written.

    Args:
        results_json: A comparison's ``results.json``.
        out: The comparison folder of the later run.
        blocks: Only the points with these ``x`` (residual blocks); None: all.
        roles: Arm roles to import, old name -> new name (None: every role under its own name).
        seeds: Only these seeds (None: all).
    """
    with open(results_json, encoding='utf-8') as f:
        r = json.load(f)
    adapter = ADAPTERS[r['task']]
    written = []
    for point in r['points']:
        if blocks is not None and point['x'] not in blocks:
            continue
        for role, arm in point['arms'].items():
            if roles is not None and role not in roles:
                continue
            new_role = roles[role] if roles is not None else role
            order = [int(s) for s in arm['per_seed']]
            train = (arm.get('train_stats') or {}).get('values') or [None] * len(order)
            for seed, train_metric in zip(order, train):
                if seeds is not None and seed not in seeds:
                    continue
                run = os.path.join(out, point['name'].replace(' ', '_'), new_role, f'seed{seed}')
                path = os.path.join(run, RESULTS)
                if os.path.exists(path) or os.path.exists(os.path.join(run, 'result.json')):
                    raise FileExistsError(f'{run} holds a run; an imported run never replaces a trained one')
                # the engine's keys that the earlier report kept, and what the harness adds (its curve is lost)
                result = dict(kind=adapter.kind, final={adapter.final: arm['per_seed'][str(seed)]},
                              items_seen=arm.get('seen'), train_time_s=arm.get('train_time'), steps=None,
                              stopped_early=False, params=arm.get('params'),
                              **{SECTION: dict(train_metric=train_metric, curve=[], machine=arm.get('machine'),
                                               imported_from=results_json,
                                               **{k: arm.get(k) for k in ('macs', 'blocks', 'layers', 'plan')})})
                os.makedirs(run, exist_ok=True)
                tmp = path + '.tmp'
                with open(tmp, 'w', encoding='utf-8') as f:
                    json.dump(result, f, indent=2)
                os.replace(tmp, path)
                written.append(path)
    return written


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('results_json')
    ap.add_argument('out')
    ap.add_argument('--blocks', type=int, nargs='+', help='only these points (residual blocks)')
    ap.add_argument('--role', nargs='+', metavar='OLD=NEW', help='roles to import, renamed (default: all, same name)')
    ap.add_argument('--seeds', type=int, nargs='+', help='only these seeds')
    args = ap.parse_args(argv)
    roles = dict([('baseline', 'baseline')] + [tuple(r.split('=', 1)) for r in args.role]) if args.role else None
    for path in import_runs(args.results_json, args.out, args.blocks, roles, args.seeds):
        print(path)
    return 0


if __name__ == '__main__':
    sys.exit(main())
