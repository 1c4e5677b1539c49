"""The language-model sweep: residual LM against its Steps twin, cell by cell, seeds paired, resumable.

The cells, models and protocol are in ``benchmarks/lm_sweep.yaml``. This script is the command line of
:mod:`stepsnet.compare.lm_sweep` (planning, training through the comparison harness, reading the runs back); the
report is written by :mod:`stepsnet.reports.lm_sweep_report`, its tests computed by :mod:`stepsnet.reports.lm_sweep`
(as in the result tables of the docs, ``scripts/render_results.py``). The runs go into
``OUT/runs/<model>-i<iters>-lr<lr>/seed<n>``; a finished run is never trained again, an interrupted one resumes
from its last checkpoint. It runs from any folder (relative paths are relative to the current one).

Usage::

    python benchmarks/lm_sweep.py --jobs 2                  # run what is missing, then write the report
    python benchmarks/lm_sweep.py --report-only             # report what has finished so far
    python benchmarks/lm_sweep.py --list                    # the planned runs, in the order they would run
    python benchmarks/lm_sweep.py --from-csv docs/figures/lm/sweep.csv --out DIR   # the report again from a CSV

The report is ``OUT/sweep.csv`` (one row per run), ``OUT/sweep.md`` (per cell: each model's loss, mean +- std
over seeds, the paired differences to the baseline, then every difference's tests and verdict), ``OUT/sweep.json``
(the same differences with both tests) and ``OUT/sweep.png``.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional

from stepsnet.compare.lm_sweep import parse_overrides, run_sweep

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)  # the repository: a sweep's relative config path is read from it


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--sweep', default=os.path.join(HERE, 'lm_sweep.yaml'), help='sweep file')
    p.add_argument('--out', default=os.path.join('runs', 'lm-sweep'), help='output folder (default runs/lm-sweep)')
    p.add_argument('--jobs', type=int, default=1, help='runs side by side, each in its own process (default 1)')
    p.add_argument('--threads', type=int, default=1, help='torch threads per run (default 1)')
    p.add_argument('--data-dir', default=None, help="prepared data (default: the config's data_dir)")
    p.add_argument('--skip-optional', action='store_true', help='leave out the cells marked optional')
    p.add_argument('--rule', choices=('both', 't', 'sign-flip'), default=None,
                   help='what decides a verdict: both tests (default, an exploratory sweep) or the test a protocol '
                        'named before its runs (the Llama pair\'s: t)')
    p.add_argument('--report-only', action='store_true', help='write the report of finished runs; train nothing')
    p.add_argument('--from-csv', metavar='CSV', help='train nothing: write the report again from the per-run rows of '
                   'an earlier sweep.csv (e.g. docs/figures/lm/sweep.csv) into --out')
    p.add_argument('--list', action='store_true', help='print the planned runs and whether each has finished')
    p.add_argument('--set', action='append', default=[], metavar='FIELD=VALUE',
                   help='override a training field of every run (e.g. for a quick check: --set max_iters=5)')
    args = p.parse_args(argv)
    if args.jobs < 1 or args.threads < 1:
        p.error('--jobs and --threads must be >= 1')
    try:
        overrides = parse_overrides(args.set)
    except ValueError as e:
        p.error(str(e))
    return run_sweep(args.sweep, args.out, jobs=args.jobs, threads=args.threads, data_dir=args.data_dir,
                     skip_optional=args.skip_optional, rule=args.rule, report_only=args.report_only,
                     from_csv=args.from_csv, list_runs=args.list, overrides=overrides, root=ROOT)


if __name__ == '__main__':
    sys.exit(main())
