"""The dry run of every paper recipe on one GPU: does Table 1 fit, and how long will it take?

Each recipe of ``configs/{cls,det,seg,lm}`` that reproduces a paper experiment (the ImageNet, COCO, ADE20K and
WikiText-103 recipes; the small CPU recipes are left out) is dry-run at its own per-GPU batch, input size and AMP
setting (bfloat16 autocast) on generated data in the data set's layout (``--synthetic-data``): ``--steps`` optimizer
steps and one evaluation batch, eager first for every recipe, then with ``torch.compile``. Per run it records the
step time, the throughput, the peak CUDA memory and the projected GPU-hours of the whole recipe (the dry-run report
of :mod:`stepsnet.utils.dryrun`); a run that runs out of memory or fails is recorded with its error, and runs that
would start after the time budget are recorded as skipped. Writes ``OUT/PREFIX.json`` and ``OUT/PREFIX.md``.

    python benchmarks/gpu_recipes.py                    # on a GPU (benchmarks/gpu_recipes.sh runs this)
    python benchmarks/gpu_recipes.py --tiny             # a CPU check of the script: small inputs, one step

Nothing here has run on a GPU yet; the figures come from the first GPU that runs it.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
import traceback
from typing import Any, Dict, List, Optional

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def paper_recipes() -> List[str]:
    from stepsnet.utils.tasks import paper_recipes as recipes  # the one list (torch-free)
    return [os.path.join(REPO, p) for p in recipes(REPO)]


def task_of(path: str) -> str:
    from stepsnet.utils.config import recipe_task
    return recipe_task(path)


def dry_run(path: str, compile: bool, steps: int, device: str, tiny: bool, threads: Optional[int]) -> Dict[str, Any]:
    """One recipe's dry run in this process; the report as a dict (or the error)."""
    import torch

    from stepsnet.utils.tasks import TASKS, resolve
    task = task_of(path)
    load_config, train = resolve(TASKS[task].load_config), resolve(TASKS[task].train)
    overrides = dict(dry_run=steps, synthetic_data=True, device=device, compile=compile, progress=False,
                     tensorboard=False, threads=threads,
                     out_dir=os.path.join('runs', 'gpu-recipes', os.path.splitext(os.path.basename(path))[0]))
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if tiny:  # the recipe's model, optimizer, schedule and pipeline at a CPU's batch and small inputs (the task table)
        overrides.update({**TASKS[task].cpu_batch, **TASKS[task].tiny_inputs})
    row: Dict[str, Any] = dict(recipe=os.path.relpath(path, REPO), task=task, compile=compile)
    t0 = time.perf_counter()
    try:
        cfg = load_config(path, **overrides)
        row.update(model=getattr(cfg, 'model', None) or getattr(cfg, 'backbone', ''), batch_size=cfg.batch_size,
                   amp=cfg.amp_dtype if cfg.amp else 'float32')
        result = train(cfg)
        row.update(status='ok', **result['results']['dry_run'])
    except torch.cuda.OutOfMemoryError as e:
        row.update(status='out of memory', error=str(e).splitlines()[0])
    except Exception as e:  # one recipe's failure is recorded; the others still run
        row.update(status='failed', error=f'{type(e).__name__}: {e}'.splitlines()[0])
        traceback.print_exc()
    row['wall_s'] = round(time.perf_counter() - t0, 2)
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    if compile:
        torch._dynamo.reset()
    return row


def markdown(rows: List[Dict[str, Any]], device: str) -> str:
    lines = [f'Dry runs of the paper recipes on {device} (generated data in each data set\'s layout, the recipe\'s '
             'per-process batch and AMP setting; projected time = the recipe\'s steps x the median step time + its '
             'evaluations).', '',
             '| recipe | model | compile | batch | step (s) | items/s | peak memory (GiB) | projected GPU-hours | '
             'status |', '|---|---|---|---|---|---|---|---|---|']
    for r in rows:
        if r.get('status') == 'ok':
            step = r['step_s'] if r['step_s'] is not None else r['first_step_s']
            cells = [f'{step:.3f}', f'{r["items_per_s"]:,.1f} {r["item_name"]}',
                     f'{r["peak_memory_bytes"] / 2 ** 30:.2f}', f'{r["device_hours"]:,.1f}', 'ok']
        else:
            cells = ['', '', '', '', f'{r.get("status")}: {r.get("error", "")}'[:120]]
        lines.append(f'| {r["recipe"]} | {r.get("model", "")} | {"yes" if r["compile"] else "no"} | '
                     f'{r.get("batch_size", "")} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'


def write(rows: List[Dict[str, Any]], args: argparse.Namespace, device: str, prefix: str) -> None:
    label = device
    if device.startswith('cuda'):
        import torch
        label = torch.cuda.get_device_name(torch.device(device))
    with open(os.path.join(args.out, f'{prefix}.json'), 'w', encoding='utf-8') as f:
        json.dump(dict(device=label, steps=args.steps, rows=rows), f, indent=2)
    with open(os.path.join(args.out, f'{prefix}.md'), 'w', encoding='utf-8') as f:
        f.write(markdown(rows, label))


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--recipes', nargs='+', help='recipe files (default: every paper recipe in configs/)')
    p.add_argument('--steps', type=int, default=10, help='optimizer steps per dry run (default 10)')
    p.add_argument('--compile', choices=('both', 'off', 'on'), default='both',
                   help='eager runs, compiled runs or both (default: every recipe eager, then compiled)')
    p.add_argument('--budget', type=float, default=420, help='seconds; runs that would start later are skipped')
    p.add_argument('--out', default=os.path.join(REPO, 'benchmarks', 'results'))
    p.add_argument('--prefix', help='file name stem (default gpu_recipes, or gpu_recipes_tiny with --tiny)')
    p.add_argument('--device', help='default cuda (cpu with --tiny)')
    p.add_argument('--threads', type=int, help='torch CPU threads')
    p.add_argument('--tiny', action='store_true', help='a CPU check: small inputs and batches '
                   '(the task table\'s cpu_batch and tiny_inputs)')
    args = p.parse_args(argv)
    device = args.device or ('cpu' if args.tiny else 'cuda')
    prefix = args.prefix or ('gpu_recipes_tiny' if args.tiny else 'gpu_recipes')
    recipes = [r if os.path.isfile(r) else os.path.join(REPO, r) for r in args.recipes] if args.recipes \
        else paper_recipes()
    recipes = [os.path.abspath(r) for r in recipes]
    modes = {'both': (False, True), 'off': (False,), 'on': (True,)}[args.compile]
    start = time.perf_counter()
    rows: List[Dict[str, Any]] = []
    os.makedirs(args.out, exist_ok=True)
    for compile in modes:
        for path in recipes:
            left = args.budget - (time.perf_counter() - start)
            name = f'{os.path.relpath(path, REPO)} ({"compiled" if compile else "eager"})'
            if left <= 0:
                print(f'{name}: skipped, no time left', flush=True)
                rows.append(dict(recipe=os.path.relpath(path, REPO), task=task_of(path), compile=compile,
                                 status='skipped', error='time budget spent'))
                continue
            print(f'== {name}', flush=True)
            rows.append(dry_run(path, compile, args.steps, device, args.tiny, args.threads))
            write(rows, args, device, prefix)  # after every run: a run stopped from outside keeps what finished
    write(rows, args, device, prefix)
    ok = sum(r.get('status') == 'ok' for r in rows)
    print(f'{ok} of {len(rows)} dry runs ok; done in {time.perf_counter() - start:.0f} s; '
          f'{os.path.join(args.out, prefix)}.{{json,md}}', flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
