"""Which decoder architectures the Steps twin covers, measured: the table docs/llama.md shows.

For every family of :data:`stepsnet.hf.DECODERS`, :func:`check_decoder` builds the family's tiny example config
(vocabulary 256, width 64) with transformers' own class and its twin and measures what the twin promises:

* **one-step logits**: the one-step twin, with the host's weights loaded unchanged, gives the host's logits exactly
  (``torch.equal`` at float32, a left-padded batch), and so does the one-step twin that ``from_pretrained`` reads
  from the host's ``save_pretrained`` folder (the host's file format: Mixtral's per-expert tensors, ...);
* **cache**: the 3-step twin's greedy ``generate`` with the KV cache equals the one without, and a cached decoding
  step gives the full forward pass's logits; the same generation with a static cache too;
* **save / load**: ``save_pretrained`` then ``AutoModelForCausalLM.from_pretrained`` gives the same class and the same
  logits, and the folder carries the remote-code ``auto_map``.

Parameter parity of the 3-step twin is counted on the published shapes of :data:`stepsnet.hf.twins.REAL_SHAPES`
(meta device). Regenerate the tables of docs/llama.md with::

    python -m stepsnet.hf.coverage docs/llama.md
"""
from __future__ import annotations

import json
import pathlib
import sys
import tempfile
from typing import Any, Dict, List, Optional

import torch
from transformers import AutoConfig, AutoModelForCausalLM

from stepsnet.hf.steps_decoder import DECODERS, NOT_COVERED, REMOTE_CODE_FILE, steps_twin_config, twin_classes
from stepsnet.hf.twins import PARITY_TOLERANCE, TABLE_MARKERS, format_parity_table, parity_table
from stepsnet.utils.docblocks import replace_block

__all__ = ['check_decoder', 'coverage_rows', 'format_coverage_table', 'format_not_covered', 'COVERAGE_MARKERS',
           'with_tables', 'write_tables']

COVERAGE_MARKERS = ('<!-- decoder-coverage:begin -->', '<!-- decoder-coverage:end -->')


def _example(model_type: str) -> Any:
    return AutoConfig.for_model(model_type, **DECODERS[model_type].example)


def check_decoder(model_type: str, seed: int = 0) -> Dict[str, Any]:
    """Measure one family's twin on its tiny example config (see the module's docstring); nothing is downloaded.

    Returns:
        A dict with ``one_step_max_diff`` and ``one_step_exact`` (host vs one-step twin), ``host_checkpoint_equal``
        (the host's ``save_pretrained`` folder read by the one-step twin's ``from_pretrained``), ``cache_equal`` (greedy
        generation with and without the cache), ``static_cache_equal`` and ``static_cache_error`` (the same with
        ``cache_implementation='static'``), ``cached_step_max_diff`` (a cached step against the full pass),
        ``reload_equal`` and ``reload_class`` (save and load), ``auto_map`` (the saved folder's remote-code entries
        name this twin's classes in ``steps_decoder.py``), ``plan`` and the class names.
    """
    config = _example(model_type)
    torch.manual_seed(seed)
    host = AutoModelForCausalLM.from_config(config).eval()
    one = AutoModelForCausalLM.from_config(steps_twin_config(config, num_steps=1)).eval()
    one.load_state_dict(host.state_dict(), strict=True)
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(1, config.vocab_size, (2, 12), generator=g)
    mask = torch.ones_like(x)
    mask[0, :3] = 0  # left padding, as generation pads
    with torch.no_grad():
        a, b = host(x, attention_mask=mask).logits, one(x, attention_mask=mask).logits
    twin = AutoModelForCausalLM.from_config(steps_twin_config(config)).eval()
    prompt, prompt_mask = x[:, :6], mask[:, :6]
    gen = dict(attention_mask=prompt_mask, max_new_tokens=8, do_sample=False, pad_token_id=0)
    with_cache = twin.generate(prompt, use_cache=True, **gen)
    without = twin.generate(prompt, use_cache=False, **gen)
    try:
        static = twin.generate(prompt, use_cache=True, cache_implementation='static', **gen)
    except Exception as e:  # noqa: BLE001 - measured, reported in the table
        static = e
    with torch.no_grad():
        out = twin(x[:, :8], attention_mask=mask[:, :8], use_cache=True)
        step = twin(x[:, 8:9], attention_mask=mask[:, :9], cache=out.cache, use_cache=True)
        full = twin(x[:, :9], attention_mask=mask[:, :9]).logits
        expected = twin(x, attention_mask=mask).logits
    with tempfile.TemporaryDirectory() as folder:  # a host checkpoint (its own file format) into the one-step twin
        host.save_pretrained(folder)
        loaded = AutoModelForCausalLM.from_pretrained(folder, config=steps_twin_config(config, num_steps=1)).eval()
    with torch.no_grad():
        from_host = torch.equal(loaded(x, attention_mask=mask).logits, a)
    with tempfile.TemporaryDirectory() as folder:
        twin.save_pretrained(folder)
        saved = json.loads((pathlib.Path(folder) / 'config.json').read_text())
        reloaded = AutoModelForCausalLM.from_pretrained(folder).eval()
        has_remote_code = (pathlib.Path(folder) / REMOTE_CODE_FILE).is_file()
    with torch.no_grad():
        again = reloaded(x, attention_mask=mask).logits
    classes = twin_classes(model_type)
    return dict(
        model_type=model_type, host_class=type(host).__name__, twin_class=type(twin).__name__,
        layer_class=classes.model._steps_layer_class.__name__, plan=str(twin.config.plan()),
        one_step_max_diff=(a - b).abs().max().item(), one_step_exact=torch.equal(a, b), host_checkpoint_equal=from_host,
        cache_equal=with_cache.shape[1] == prompt.shape[1] + 8 and torch.equal(with_cache, without),
        static_cache_equal=isinstance(static, torch.Tensor) and torch.equal(static, without),
        static_cache_error='' if isinstance(static, torch.Tensor) else f'{type(static).__name__}: {static}',
        cached_step_max_diff=(step.logits[:, -1] - full[:, -1]).abs().max().item(),
        reload_equal=torch.equal(again, expected), reload_class=type(reloaded).__name__,
        auto_map=has_remote_code and saved.get('auto_map', {}).get('AutoModelForCausalLM') ==
        f'{REMOTE_CODE_FILE[:-3]}.{classes.causal_lm.__name__}')


def coverage_rows(checks: Optional[Dict[str, Dict[str, Any]]] = None,
                  parity: Optional[List[Dict[str, Any]]] = None) -> List[Dict[str, Any]]:
    """One row per family of the registry: its checks (run here unless given) and its real shapes' parity rows."""
    parity = parity if parity is not None else parity_table()
    rows = []
    for model_type, family in DECODERS.items():
        check = (checks or {}).get(model_type) or check_decoder(model_type)
        rows.append(dict(family=family, check=check, shapes=[r for r in parity if r['family'] == model_type]))
    return rows


def _percent(diff: float) -> str:
    text = f'{100 * diff:+.2f}%'
    return text if abs(diff) <= PARITY_TOLERANCE else f'**{text}**'


def _yes(ok: bool) -> str:
    return 'yes' if ok else '**no**'


def format_coverage_table(rows: List[Dict[str, Any]]) -> str:
    """Markdown table of :func:`coverage_rows`."""
    lines = ['| family (`model_type`) | host classes | what its own code does, kept by the twin | one-step logits = '
             'host | host checkpoint -> one-step twin | cache | static cache | save / load | 3-step twin params vs '
             'host, published shapes: plain rule (scaled feed-forward) / default (matched feed-forward) (bold: '
             'over 0.5%) |', '|---' * 9 + '|']
    for r in rows:
        f, c = r['family'], r['check']
        exact = 'exact' if c['one_step_exact'] else f'**no** (max diff {c["one_step_max_diff"]:.1e})'
        from_host = _yes(c['host_checkpoint_equal'])
        cache = _yes(c['cache_equal'] and c['cached_step_max_diff'] <= 1e-5)
        static = _yes(c['static_cache_equal'])
        reload = _yes(c['reload_equal'] and c['reload_class'] == c['twin_class'] and c['auto_map'])
        shapes = '; '.join(f'{s["model"]} {_percent(s["diff"])} / {_percent(s["matched_diff"])}'
                           for s in r['shapes']) or 'no published shape typed'
        lines.append(f'| {f.name} (`{f.model_type}`) | `{c["host_class"]}`, `{c["layer_class"]}` | {f.features} | '
                     f'{exact} | {from_host} | {cache} | {static} | {reload} | {shapes} |')
    return '\n'.join(lines) + '\n'


def format_not_covered() -> str:
    """Markdown list of :data:`stepsnet.hf.NOT_COVERED`, one item per reason."""
    by_reason: Dict[str, List[str]] = {}
    for model_type, reason in NOT_COVERED.items():
        by_reason.setdefault(reason, []).append(f'`{model_type}`')
    return ''.join(f'* {", ".join(types)}: {reason}.\n' for reason, types in by_reason.items())


def with_tables(text: str, rows: List[Dict[str, Any]], parity: List[Dict[str, Any]]) -> str:
    """``text`` with the coverage table (and the list of what is left out) and the parity table between markers."""
    text = replace_block(text, format_coverage_table(rows) + '\nLeft out, and why:\n\n' + format_not_covered(),
                         *COVERAGE_MARKERS)
    return replace_block(text, format_parity_table(parity), *TABLE_MARKERS)


def write_tables(path: pathlib.Path) -> bool:
    """Measure every family, count the real shapes and write both tables into ``path``; whether it changed."""
    parity = parity_table()
    text = path.read_text()
    new = with_tables(text, coverage_rows(parity=parity), parity)
    if new != text:
        tmp = path.with_suffix('.tmp')
        tmp.write_text(new)
        tmp.replace(path)
    return new != text


def main(argv: Optional[List[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    path = pathlib.Path(args[0] if args else 'docs/llama.md')
    torch.set_num_threads(1)  # tiny models: one thread is faster, and leaves the machine to the rest
    print(f'{path}: tables {"updated" if write_tables(path) else "unchanged"}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
