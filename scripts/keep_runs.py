"""Keep the finished runs of a comparison without their checkpoints, or put them back to continue it elsewhere.

A comparison (``stepsnet compare``, pre-registered or not) reuses every run folder that holds the results of a
finished run (``<point>/<arm>/seed<k>/results.json`` with the harness's part, read by
:func:`stepsnet.compare.read_result`). Those few kilobytes per run are all a later session or another machine of the
kind needs to go on where the comparison stopped; the checkpoints (megabytes each) are not::

    python scripts/keep_runs.py runs/protocols/depth_replication docs/figures/analyses/replication/runs   # keep
    python scripts/keep_runs.py docs/figures/analyses/replication/runs ../replication/runs/protocols/depth_replication

Only finished runs are copied (a run still training has no results yet: it starts again where it is continued),
each with its ``config.json`` and ``log.csv``; a run already present at the destination is left as it is, so that
nothing finished is ever overwritten.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from typing import List, Optional

from stepsnet.compare import read_result

KEPT = ('results.json', 'config.json', 'log.csv')


def keep_runs(source: str, dest: str) -> List[str]:
    """Copy the small files of every finished run under ``source`` to the same place under ``dest``; return the run
    folders copied (relative to ``source``).

    Raises:
        FileNotFoundError: ``source`` is not a folder.
    """
    if not os.path.isdir(source):
        raise FileNotFoundError(f'{source!r} is not a folder; expected the output folder of a comparison')
    copied = []
    for folder, _, files in sorted(os.walk(source)):
        if 'results.json' not in files or read_result(folder) is None:
            continue
        rel = os.path.relpath(folder, source)
        target = os.path.join(dest, rel)
        if os.path.isfile(os.path.join(target, 'results.json')):
            continue  # finished there already: never overwritten
        os.makedirs(target, exist_ok=True)
        for name in KEPT:
            if name in files:
                shutil.copy2(os.path.join(folder, name), os.path.join(target, name))
        copied.append(rel)
    return copied


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('source', help='a comparison\'s output folder, or a folder of kept runs')
    p.add_argument('dest', help='where the finished runs go (the same layout)')
    args = p.parse_args(argv)
    try:
        copied = keep_runs(args.source, args.dest)
    except FileNotFoundError as e:
        print(f'keep_runs: error: {e}', file=sys.stderr)
        return 2
    print(f'{len(copied)} finished run{"" if len(copied) == 1 else "s"} copied from {args.source} to {args.dest}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
