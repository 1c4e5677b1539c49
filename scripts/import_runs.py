"""Write the per-run ``result.json`` files of an earlier comparison's ``results.json`` into a comparison folder.

A comparison (``stepsnet compare`` / ``stepsnet analyze pilot``) reuses every run whose folder holds a
``result.json``. A committed ``results.json`` keeps each run's metric and training-set metric per seed, so the
runs of an earlier report can join a later comparison of the same recipe with more seeds, without being trained
again::

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


def import_runs(results_json: str, out: str, blocks: Optional[List[int]] = None, roles: Optional[dict] = None,
                seeds: Optional[List[int]] = None) -> List[str]:
    """Write ``OUT/<point>/<role>/seed<k>/result.json`` for every run of ``results_json``; return the paths written.

    Args:
        results_json: A comparison's ``results.json``.
        out: The comparison folder of the later run.
        blocks: Only the points with these ``x`` (residual blocks); None: all.
        roles: Arm roles to import, old name -> new name (None: every role under its own name).
        seeds: Only these seeds (None: all).
    """
    with open(results_json, encoding='utf-8') as f:
        r = json.load(f)
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
                path = os.path.join(run, 'result.json')
                if os.path.exists(path):
                    raise FileExistsError(f'{path} exists; an imported run never replaces a trained one')
                result = dict(metric=arm['per_seed'][str(seed)], train_metric=train_metric, seen=arm.get('seen'),
                              train_time=arm.get('train_time'), curve=[], machine=arm.get('machine'),
                              imported_from=results_json,
                              **{k: arm.get(k) for k in ('params', 'macs', 'blocks', 'layers', 'plan')})
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
