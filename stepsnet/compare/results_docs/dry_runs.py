"""The table of the recorded dry runs (docs/full-scale.md): what each paper recipe measured on one CPU
(``docs/figures/dry_run/*.json``, written by ``scripts/record_dry_runs.py``), the recipe's training MACs and its
A100-hour floor (:func:`stepsnet.utils.dryrun.a100_floor`, which a dry run's own report prints too), then each
printout as it appeared.
"""
from __future__ import annotations

import pathlib
from typing import Any, Mapping, Union

from stepsnet.compare.results_docs.cells import existing, figures_dir, read_json
from stepsnet.utils import dryrun
from stepsnet.utils.config import recipe_task
from stepsnet.utils.tasks import TASKS, resolve

__all__ = ['DRY_RUNS', 'render_dry_runs']

PathLike = Union[str, pathlib.Path]

DRY_RUNS = 'dry_run'  # the folder under docs/figures


def _recipe_floor(root: pathlib.Path, r: Mapping[str, Any], flops_per_item: float) -> dryrun.A100Floor:
    """The A100-hour floor of the recipe of a recorded dry run, from the recipe as written (its path in the recorded
    command, relative to the repository ``root``)."""
    path = str(existing(root / r['command'].split(' -c ', 1)[1].split()[0]))
    task = recipe_task(path)
    cfg = resolve(TASKS[task].load_config)(path)
    return dryrun.a100_floor(task, cfg, flops_per_item, r['items_per_step'], r['total_steps'])


def _si(flops: float) -> str:
    for unit, scale in (('E', 1e18), ('P', 1e15), ('T', 1e12), ('G', 1e9), ('M', 1e6)):
        if flops >= scale:
            return f'{flops / scale:.3g} {unit}'
    return f'{flops:.3g}'


def render_dry_runs(root: PathLike) -> str:
    """The recorded dry runs of the repository at ``root``: what each measured on this CPU, and the recipe's training
    MACs and its A100 floor from them; then each printout (the ``.txt`` beside a record) as it appeared."""
    root = pathlib.Path(root)
    folder = figures_dir(root) / DRY_RUNS
    paths = sorted(folder.glob('*.json')) if folder.is_dir() else []
    if not paths:
        return 'Not recorded yet: `python scripts/record_dry_runs.py`.\n'
    lines = ['| dry run | parameters | training MACs per item (multiply-accumulates; the paper\'s \'FLOPs\') | '
             'batch per step | first step | later steps | peak memory | the recipe trains on | on this CPU | '
             'recipe MACs (multiply-accumulates) | A100-hours at 40% of peak (a floor) |',
             '|---|---|---|---|---|---|---|---|---|---|---|']
    texts = []
    for path in paths:
        r = read_json(path)
        # recorded as the counter's FLOPs (2 per multiply-accumulate); a report since also records the MACs
        flops_per_item = r['train_flops_per_step'] / (r['items_per_micro_batch'] * r['accumulation'])
        macs_per_item = r.get('train_macs_per_step', r['train_flops_per_step'] / 2) / (
            r['items_per_micro_batch'] * r['accumulation'])
        floor = _recipe_floor(root, r, flops_per_item)
        cpu_h = (floor.items / r['items_per_s'] + r['projected_eval_s']) / 3600
        later = f'{r["step_s"]:.2f} s' if r['step_s'] is not None else 'one step only'
        lines.append(
            f'| {r["name"]} | {r["params"] / 1e6:.1f}M | {_si(macs_per_item)} | {r["items_per_step"]:,} '
            f'{r["item_name"]} | {r["first_step_s"]:.2f} s | {later} | {r["peak_memory_bytes"] / 2 ** 30:.1f} GiB | '
            f'{floor.counted} | {cpu_h:,.0f} h | {_si(floor.macs)} | {floor.hours:,.1f} |')
        txt = path.with_suffix('.txt')
        if txt.is_file():
            texts.append(f'`{r["name"]}` ({r["machine"].get("cpu", "CPU")}, {r["threads"]} threads):\n\n```text\n'
                         f'{txt.read_text(encoding="utf-8").rstrip()}\n```')
    note = ('Measured on one CPU, float32, the batch cut as each printout says. *The recipe trains on*: the images or '
            'tokens of the whole recipe at its own batch and process count (8 processes for the image recipes, one '
            'for the language models, as their headers say; the `_data_dir` run reads a folder of 8 images, so its '
            'recipe is 300 epochs of those). *On this CPU*: those items at the measured throughput plus the '
            'evaluations, one process (time taken as linear in the batch). *MACs* are multiply-accumulates, the '
            'paper\'s (and timm\'s, fvcore\'s) "FLOPs": half the FLOPs `torch.utils.flop_counter` counts (2 per '
            'multiply-accumulate). *Recipe MACs*: the training MACs per item, counted on the first step, times '
            'those items. *A100-hours*: those MACs as FLOPs (2 each) at '
            f'{dryrun.ASSUMED_UTILISATION:.0%} of the A100\'s dense bfloat16 peak '
            f'({dryrun.A100_BF16_PEAK / 1e12:.0f} TFLOP/s), an assumption, not a measurement, and a floor rather than '
            'a forecast: evaluation, data loading and communication are left out, and vision training rarely keeps '
            '40% of a GPU\'s peak (`stepsnet.utils.dryrun.a100_floor`; a dry run prints the same floor). The paper '
            'does not state its hardware. The printouts below were recorded before the report printed MACs: their '
            '"FLOPs" line is the counter\'s FLOPs, twice the MACs.')
    lines += ['', note, '']
    return '\n'.join(lines + texts) + '\n'
