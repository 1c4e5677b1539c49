"""Time the dry run of every paper recipe on this machine's CPU, as a new user would type it.

    python benchmarks/dry_run_times.py                     # every paper recipe (about 15 minutes on 2 cores)
    python benchmarks/dry_run_times.py --only configs/lm/small.yaml

Each recipe of :func:`stepsnet.utils.tasks.paper_recipes` runs as its own ``stepsnet`` process (import, model, data
generation, the dry run's steps and evaluation batch, the report: everything the user waits for):

    stepsnet train -c RECIPE --synthetic-data --dry-run --batch-size 2 --device cpu --no-progress --out-dir TMP

and its wall time (and exit status) is recorded with the machine in ``benchmarks/results/dry_run_times.{json,md}``.
A recipe that asks for bfloat16 autocast runs its steps in float32 on a CPU (the dry run says so). Time it on an
otherwise idle machine; machines of one kind differ, so the table names the one it ran on.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, 'benchmarks', 'results', 'dry_run_times')
FLAGS = ['--synthetic-data', '--dry-run', '--batch-size', '2', '--device', 'cpu', '--no-progress']


def main() -> int:
    from stepsnet.utils.provenance import machine_info
    from stepsnet.utils.tasks import paper_recipes
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--only', nargs='+', metavar='RECIPE', help='recipes (paths relative to the repository root)')
    p.add_argument('--limit', type=float, default=300.0, help='seconds a dry run may take on the slower machine')
    args = p.parse_args()
    recipes = args.only or paper_recipes(ROOT)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for recipe in recipes:
            argv = [sys.executable, '-m', 'stepsnet', 'train', '-c', recipe, *FLAGS,
                    '--out-dir', os.path.join(tmp, os.path.basename(recipe))]
            t = time.perf_counter()
            proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True,
                                  env=dict(os.environ, PYTHONPATH=ROOT))
            seconds = time.perf_counter() - t
            tail = (proc.stdout + proc.stderr).strip().splitlines()[-1:] if proc.returncode else []
            rows.append(dict(recipe=recipe, seconds=round(seconds, 1), exit=proc.returncode, error=' '.join(tail)))
            print(f'{recipe}: {seconds:.1f} s, exit {proc.returncode}', flush=True)
    machine = machine_info()
    data = dict(command='stepsnet train -c RECIPE ' + ' '.join(FLAGS), rows=rows, machine=machine)
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT + '.json', 'w', encoding='utf-8') as f:
        json.dump(data, f, indent=2)
        f.write('\n')
    slowest = max(r['seconds'] for r in rows)
    lines = ['# Dry runs of the paper recipes on a CPU', '',
             f'`{data["command"]}`, each its own process, wall time from start to exit, on '
             f'{machine.get("cpu", "this CPU")} ({machine.get("cpu_count", "?")} cores), one recipe at a time on an '
             'otherwise idle machine. Machines of this kind differ by up to 2.5x: a recipe is within '
             f'{args.limit:.0f} s on the slower machine when it takes at most {args.limit / 2.5:.0f} s here.', '',
             '| recipe | seconds | exit |', '|---|---|---|']
    lines += [f'| `{r["recipe"]}` | {r["seconds"]:.1f} | {r["exit"]}{" " + r["error"] if r["error"] else ""} |'
              for r in rows]
    lines += ['', f'Slowest: {slowest:.1f} s; {sum(r["seconds"] <= args.limit / 2.5 for r in rows)} of {len(rows)} '
              f'within {args.limit / 2.5:.0f} s here.', '']
    with open(OUT + '.md', 'w', encoding='utf-8') as f:
        f.write('\n'.join(lines))
    return 0 if all(r['exit'] == 0 for r in rows) else 1


if __name__ == '__main__':
    sys.exit(main())
