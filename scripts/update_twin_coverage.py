"""Regenerate the coverage table of the generic Steps twins in docs/models.md (between the twin-coverage markers):
:mod:`stepsnet.analysis.twin_coverage` counts every configuration of every family on the meta device.

    python scripts/update_twin_coverage.py [docs/models.md] [--only NAME ...] [--family FAMILY ...]
"""
import argparse
import sys

import torch

from stepsnet.analysis.twin_coverage import coverage, render_coverage
from stepsnet.utils.docblocks import markers, write_block

BEGIN, END = markers('twin-coverage')


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
        print(render_coverage(rows))
        return 0
    write_block(args.path, render_coverage(rows), BEGIN, END)
    return 0


if __name__ == '__main__':
    sys.exit(main())
