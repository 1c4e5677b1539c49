"""The throughput benchmark's rows (:mod:`stepsnet.analysis.speed`) as a markdown table of ratios, a CSV file
(written atomically, read back with its numbers) and a bar chart of the Steps / baseline ratios."""
from __future__ import annotations

import csv
import io
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from stepsnet.utils.checkpoint import atomic_write_text
from stepsnet.utils.figures import pyplot, save_figure
from stepsnet.utils.names import plural

__all__ = ['UNITS', 'EAGER', 'format_ratios', 'write_csv', 'read_csv', 'plot_ratios']

# per kind of model: throughput column, input-size column, unit
UNITS = {'cls': ('samples_per_sec', 'img_size', 'img/s'), 'lm': ('tokens_per_sec', 'seq_len', 'tok/s')}
EAGER = 'none'  # the compile column of an eager model


def _compile_label(row: Mapping[str, Any]) -> str:
    """``none``, ``inductor`` or ``inductor (blocks)``."""
    comp = row.get('compile') or EAGER
    return f'{comp} (blocks)' if row.get('compile_scope') == 'blocks' else comp


def _rate(row: Mapping[str, Any], mode: str) -> Tuple[Optional[float], str]:
    for key, _, unit in UNITS.values():
        if row.get(f'{mode}_{key}') is not None:
            return row[f'{mode}_{key}'], unit
    return None, ''


def format_ratios(rows: Sequence[Dict[str, Any]]) -> str:
    """A markdown table: per pair, batch size and compilation, throughput of both models, the Steps / baseline
    ratio, the warm-up (compilation) time and the peak memory per mode."""
    modes = [m for m in ('infer', 'train') if any(f'{m}_batch_size' in r for r in rows)]
    # a column no row has a value for (the memory pass with --no-memory) is left out, not filled with dashes
    memory = {m: any(r.get(f'{m}_peak_mem_mb') is not None for r in rows) for m in modes}
    head = ['pair', 'batch', 'compile']
    unit = next((_rate(r, m)[1] for r in rows for m in modes if _rate(r, m)[1]), 'img/s')
    for m in modes:
        head += [f'{m} base ({unit})', f'{m} steps ({unit})', f'{m} ratio', f'{m} warm-up base/steps (s)']
        head += [f'{m} mem base/steps (MiB)'] if memory[m] else []
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    # a cell is a baseline row and a Steps row with the same pair, batch and compilation; the same cell measured
    # again (e.g. another --checkpoint-steps in a merged file) starts a new group
    groups: List[Tuple[Tuple[Any, ...], Dict[str, Dict[str, Any]]]] = []
    for r in rows:
        bs = next((r[f'{m}_batch_size'] for m in modes if f'{m}_batch_size' in r), '')
        pair = r['pair'] + (f' ({r["model_kwargs"]})' if r.get('model_kwargs') else '')
        key = (pair, bs, _compile_label(r))
        group = next((d for k, d in reversed(groups) if k == key and r['role'] not in d), None)
        if group is None:
            group = {}
            groups.append((key, group))
        group[r['role']] = r
    for (pair, bs, comp), d in groups:
        if 'baseline' not in d or 'steps' not in d:
            continue
        b, s = d['baseline'], d['steps']
        ckpt = int(s.get('checkpoint_steps') or 0)
        cells = [pair + (f', first {plural(ckpt, "step")} checkpointed' if ckpt else ''), str(bs), str(comp)]
        for m in modes:
            width = 5 if memory[m] else 4
            err = s.get(f'{m}_error') or b.get(f'{m}_error')
            if err or f'{m}_batch_size' not in s:
                cells += [err or f'{m} not measured'] + [''] * (width - 1)
                continue
            mb, ms = b.get(f'{m}_peak_mem_mb'), s.get(f'{m}_peak_mem_mb')
            mem = 'not measurable here' if mb is None or ms is None else f'{mb:.0f} / {ms:.0f}'
            wb, ws = b.get(f'{m}_warmup_s'), s.get(f'{m}_warmup_s')
            warm = 'not recorded' if wb is None or ws is None else f'{wb:.1f} / {ws:.1f}'
            cells += [f'{_rate(b, m)[0]:.2f}', f'{_rate(s, m)[0]:.2f}', f'{s[f"{m}_ratio"]:.3f}', warm]
            cells += [mem] if memory[m] else []
        lines.append('| ' + ' | '.join(cells) + ' |')
    if rows:
        r0 = rows[0]
        size = next((r0.get(f'{m}_{k}') for m in modes for _, k, _ in UNITS.values() if r0.get(f'{m}_{k}')), None)
        what = 'context' if r0.get('task') == 'lm' else 'img'
        extra = [f'{what} {size}'] if size else []
        lines.append('')
        lines.append(', '.join([f'{r0["device"]} ({r0["device_name"]})', str(r0['dtype']), str(r0['memory_format'])]
                               + extra + [
            f'warm-up {r0["warmup"]}', f'median of {plural(r0["runs"], "alternating run")} x '
            f'{plural(r0["iters"], "iteration")}',
            f'{r0.get("clock", "wall")} clock; torch {r0["torch"]}', f'timm {r0["timm"]}',
            f'stepsnet {r0["stepsnet"]}']))
    return '\n'.join(lines) + '\n'


def write_csv(rows: Sequence[Dict[str, Any]], path: str) -> None:
    """Write the rows (union of their keys, in first-seen order) atomically."""
    fields: List[str] = []
    for r in rows:
        fields += [k for k in r if k not in fields]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, restval='')
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def read_csv(path: str) -> List[Dict[str, Any]]:
    """Rows written by :func:`write_csv`, numbers converted back (to merge runs made one pair at a time)."""
    def conv(v: str) -> Any:
        if v == '':
            return None
        try:
            return int(v)
        except ValueError:
            try:
                return float(v)
            except ValueError:
                return v
    with open(path, newline='') as f:
        return [{k: (v if k in _TEXT_COLUMNS else conv(v)) for k, v in r.items() if v != '' or k in _TEXT_COLUMNS}
                for r in csv.DictReader(f)]


_TEXT_COLUMNS = {'model', 'pair', 'role', 'task', 'compile', 'compile_scope', 'model_kwargs', 'infer_runs',
                 'train_runs', 'infer_error', 'train_error', 'dtype', 'memory_format', 'device', 'device_name',
                 'torch', 'timm', 'stepsnet', 'python', 'clock'}


def plot_ratios(rows: Sequence[Dict[str, Any]], path: str) -> None:
    """Bar chart of the Steps / baseline throughput ratio per pair (and compilation) and mode."""
    plt = pyplot()
    steps_rows = [r for r in rows if r['role'] == 'steps']
    modes = [m for m in ('infer', 'train') if any(r.get(f'{m}_ratio') is not None for r in steps_rows)]
    several = len({_compile_label(r) for r in steps_rows}) > 1
    labels = [r['model'] + (f'\n{_compile_label(r)}' if several else '') for r in steps_rows]
    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(steps_rows), 3.6))
    w = 0.8 / max(len(modes), 1)
    for j, m in enumerate(modes):
        xs = [i + (j - (len(modes) - 1) / 2) * w for i in range(len(steps_rows))]
        vals = [r.get(f'{m}_ratio') for r in steps_rows]
        vals = [float('nan') if v is None else v for v in vals]
        ax.bar(xs, vals, width=w, label=m)
        for x, v in zip(xs, vals):
            if v == v:
                ax.text(x, v + 0.01, f'{v:.2f}', ha='center', va='bottom', fontsize=8)
    ax.axhline(1.0, color='k', lw=0.8)
    ax.set_xticks(range(len(steps_rows)), labels, rotation=15, fontsize=8)
    ax.set_ylabel('Steps / baseline throughput')
    r0 = rows[0] if rows else {}
    ax.set_title(f'{r0.get("device", "")} {r0.get("dtype", "")}, batch '
                 f'{r0.get("infer_batch_size", r0.get("train_batch_size", ""))}', fontsize=9)
    ax.set_ylim(0, 1.25)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
