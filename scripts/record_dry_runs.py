"""Record the dry runs that docs/full-scale.md shows: the command, its printout and its report, one per task.

    python scripts/record_dry_runs.py                  # all of them (a few minutes on 2 cores)
    python scripts/record_dry_runs.py --only swin_tiny_imagenet_data_dir

Each run is a separate ``stepsnet`` process (what a user types), on this machine's CPU, float32 (bfloat16
autocast is emulated, and two orders of magnitude slower, on CPUs without bfloat16 arithmetic), with the batch cut to
what 2 cores run in seconds; the printout records every field changed from the recipe. Writes
``docs/figures/dry_run/NAME.txt`` (the command and what it printed), ``NAME.json`` (the report, the command and the
machine); ``python scripts/render_results.py dry-runs`` then renders the table of docs/full-scale.md from them.
Time it on an otherwise idle machine.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, 'docs', 'figures', 'dry_run')
CPU = ['--device', 'cpu', '--no-amp', '--no-progress']
RUNS = {
    # the acceptance form: a folder in ImageNet's layout given with --data-dir (generated here, 4 classes)
    'swin_tiny_imagenet_data_dir': (['train', '-c', 'configs/cls/swin_tiny_imagenet.yaml', '--data-dir', '{imagenet}',
                                     '--dry-run', '--batch-size', '8', '--workers', '0'], 'cls'),
    'swin_tiny_imagenet': (['train', '-c', 'configs/cls/swin_tiny_imagenet.yaml', '--synthetic-data', '--dry-run',
                            '--batch-size', '8', '--workers', '0'], None),
    'mask_rcnn_fpn_1x_steps_swin_tiny': (['train', '-c', 'configs/det/mask_rcnn_fpn_1x_steps_swin_tiny.yaml',
                                          '--synthetic-data', '--dry-run', '--workers', '0'], None),
    'upernet_160k_steps_swin_tiny': (['train', '-c', 'configs/seg/upernet_160k_steps_swin_tiny.yaml',
                                      '--synthetic-data', '--dry-run', '--workers', '0'], None),
    'lm_large': (['train', '-c', 'configs/lm/large.yaml', '--synthetic-data', '--dry-run', '--batch-size', '2'], None),
}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--only', nargs='+', choices=sorted(RUNS))
    p.add_argument('--threads', type=int, default=2)
    args = p.parse_args()
    from stepsnet.data.layouts import write_layout
    from stepsnet.utils.provenance import machine_info
    os.makedirs(OUT, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only or RUNS:
            argv, layout = RUNS[name]
            folder = write_layout(layout, os.path.join(tmp, 'data')) if layout else ''
            report = os.path.join(tmp, f'{name}.json')
            shown = [a.replace('{imagenet}', '/data/imagenet-layout') for a in argv] + CPU
            run = [a.replace('{imagenet}', folder) for a in argv] + CPU + [
                '--threads', str(args.threads), '--out-dir', os.path.join(tmp, 'runs', name),
                '--dry-run-report', report]
            print(f'== {name}: stepsnet {shlex.join(shown)}', flush=True)
            proc = subprocess.run([sys.executable, '-m', 'stepsnet', *run], cwd=ROOT, capture_output=True, text=True,
                                  env=dict(os.environ, PYTHONPATH=ROOT))
            text = (proc.stdout + proc.stderr).replace(tmp, '/tmp/...')
            print(text, flush=True)
            if proc.returncode != 0:
                print(f'{name} failed (exit {proc.returncode}); nothing recorded', file=sys.stderr)
                return proc.returncode
            with open(os.path.join(OUT, f'{name}.txt'), 'w', encoding='utf-8') as f:
                f.write(f'$ stepsnet {shlex.join(shown)}\n{text}')
            with open(report, encoding='utf-8') as f:
                data = json.load(f)
            data.update(name=name, command='stepsnet ' + shlex.join(shown), threads=args.threads,
                        machine=machine_info())
            with open(os.path.join(OUT, f'{name}.json'), 'w', encoding='utf-8') as f:
                json.dump(data, f, indent=2)
                f.write('\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
