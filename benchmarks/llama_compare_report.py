"""Report of the Llama comparison (benchmarks/llama_compare.yaml) beside the GPT sweep's cell of the same shape.

The runs are trained by ``benchmarks/lm_sweep.py --sweep benchmarks/llama_compare.yaml``; this script reads their
per-seed results (``OUT/sweep.csv``, copied to ``docs/figures/lm/llama/runs.csv``) and the GPT sweep's
(``docs/figures/lm/sweep.csv``), pairs each cell's runs by seed and tests the differences Steps - baseline with
:mod:`stepsnet.stats` (paired t-test, 95% CI; Holm over the Llama cells that ran). It writes
``docs/figures/lm/llama/report.md`` and the same table into docs/llama.md (between its markers)::

    python benchmarks/llama_compare_report.py --out runs/llama-compare   # copy the runs' results, then render
    python benchmarks/llama_compare_report.py                            # render from the committed results
"""
from __future__ import annotations

import argparse
import csv
import os
import pathlib
import shutil
import sys
from typing import Dict, List, Optional

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / 'scripts'))

from lm_sweep import load_sweep  # noqa: E402
from update_readme_table import replace_table, write_table  # noqa: E402

from stepsnet.stats import adjust, format_test, paired_test, verdict  # noqa: E402

FIGURES = ROOT / 'docs' / 'figures' / 'lm' / 'llama'
RUNS_CSV = FIGURES / 'runs.csv'
GPT_CSV = ROOT / 'docs' / 'figures' / 'lm' / 'sweep.csv'
DOC = ROOT / 'docs' / 'llama.md'
MARKERS = ('<!-- llama-compare:begin -->', '<!-- llama-compare:end -->')
# the GPT sweep's models of the same cell (benchmarks/lm_sweep.yaml): 128 wide, depth 8
GPT_PAIR = ('res8', 'steps8')


def _losses(path: pathlib.Path, model_key: str, max_iters: int, lr: float) -> Dict[int, float]:
    if not path.is_file():
        return {}
    with open(path, newline='', encoding='utf-8') as f:
        return {int(r['seed']): float(r['val_loss']) for r in csv.DictReader(f)
                if r['model_key'] == model_key and int(r['max_iters']) == max_iters and abs(float(r['lr']) - lr) < 1e-12
                and r['val_loss']}


def _seeds(values: Dict[int, float]) -> str:
    return ', '.join(f'{values[s]:.4f}' for s in sorted(values)) or '—'


def render(sweep_path: pathlib.Path = HERE / 'llama_compare.yaml') -> str:
    """The markdown table of every planned cell, each beside the GPT pair's cell of the same steps."""
    sweep = load_sweep(str(sweep_path))
    rows, tests = [], []
    for cell in sweep['cells']:
        lr = cell['lrs'][0]
        for family, (base_key, steps_key), path in (
                ('Llama', (cell['roles']['baseline'], cell['roles']['steps']), RUNS_CSV),
                ('GPT-2-style', GPT_PAIR, GPT_CSV)):
            base = _losses(path, base_key, int(cell['max_iters']), lr)
            steps = _losses(path, steps_key, int(cell['max_iters']), lr)
            diffs = {s: steps[s] - base[s] for s in steps if s in base}
            test = paired_test([diffs[s] for s in sorted(diffs)])
            rows.append(dict(cell=cell['name'], steps=cell['max_iters'], family=family, base=base, steps_=steps,
                             diffs=diffs, test=test, planned=len(cell['seeds'])))
            if family == 'Llama' and test.n:
                tests.append(len(rows) - 1)
    for i, t in zip(tests, adjust([rows[i]['test'] for i in tests])):
        rows[i]['test'] = t
    lines = ['| cell | pair | baseline loss per seed | Steps loss per seed | Steps − baseline: mean ± std, 95% CI, '
             'p | verdict |', '|---|---|---|---|---|---|']
    for r in rows:
        if r['family'] == 'Llama' and not r['diffs']:
            lines.append(f'| {r["cell"]} ({r["steps"]} steps) | {r["family"]} | not run yet | not run yet | — | '
                         f'planned: {r["planned"]} seeds |')
            continue
        if not r['diffs']:
            continue
        lines.append(f'| {r["cell"]} ({r["steps"]} steps) | {r["family"]} | {_seeds(r["base"])} | '
                     f'{_seeds(r["steps_"])} | {format_test(r["test"], 4)} | '
                     f'{verdict(r["test"], higher_is_better=False, digits=4)} |')
    return '\n'.join(lines) + '\n'


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--out', help='the comparison folder of lm_sweep.py (its sweep.csv is copied into the docs)')
    args = p.parse_args(argv)
    FIGURES.mkdir(parents=True, exist_ok=True)
    if args.out:
        src = os.path.join(args.out, 'sweep.csv')
        if not os.path.isfile(src):
            raise SystemExit(f'{src} not found; run benchmarks/lm_sweep.py --sweep benchmarks/llama_compare.yaml '
                             f'--out {args.out} --report-only first')
        shutil.copyfile(src, RUNS_CSV)
        for name in ('sweep.png',):
            if os.path.isfile(os.path.join(args.out, name)):
                shutil.copyfile(os.path.join(args.out, name), FIGURES / name)
    table = render()
    intro = ('Final validation loss (nats per byte, 512 fixed windows) per seed 0, 1, 2; differences paired by seed; '
             'Holm over the Llama cells that ran; GPT-2-style rows from the sweep of docs/language-modelling.md.\n\n')
    tmp = FIGURES / 'report.md.tmp'
    tmp.write_text('# Llama pair: Steps twin against LlamaForCausalLM\n\n' + intro + table)
    tmp.replace(FIGURES / 'report.md')
    write_table(DOC, table, *MARKERS)
    return 0


def is_current() -> bool:
    """Whether docs/llama.md holds the table the committed results render to."""
    doc = DOC.read_text()
    return replace_table(doc, render(), *MARKERS) == doc


if __name__ == '__main__':
    sys.exit(main())
