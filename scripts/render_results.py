"""Render the result tables of docs/ from the committed result files.

The tables, and which block of which document each is, are :mod:`stepsnet.compare.results_docs`; this is its
command line, run from anywhere (the repository root is this file's parent's parent)::

    python scripts/render_results.py                  # rewrite every block
    python scripts/render_results.py --check          # list the stale blocks and exit 1 (tests/test_results_docs.py)
    python scripts/render_results.py dry-runs         # only these blocks
"""
import argparse
import pathlib
import sys
from typing import Optional, Sequence

from stepsnet.compare.results_docs import BLOCKS, check_names, stale_blocks, write_blocks

ROOT = pathlib.Path(__file__).resolve().parents[1]


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--check', action='store_true', help='list the stale blocks and exit 1 if there are any')
    ap.add_argument('blocks', nargs='*', metavar='BLOCK', help=f'only these blocks (default: all): {", ".join(BLOCKS)}')
    args = ap.parse_args(argv)
    try:
        names = check_names(args.blocks)
    except ValueError as e:
        ap.error(str(e))
    if args.check:
        stale = stale_blocks(ROOT, names)
        for s in stale:
            print(f'stale: {s}')
        return 1 if stale else 0
    write_blocks(ROOT, names)
    return 0


if __name__ == '__main__':
    sys.exit(main())
