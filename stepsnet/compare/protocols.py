"""Pre-registered comparisons: the comparison a committed protocol fixes (:func:`protocol_comparison`), run exactly as
registered (:func:`run_protocol`), and the power plan of a finished report (:func:`power_plan`)."""
from __future__ import annotations

import os
from typing import Any, Dict, List, Mapping, Optional, Sequence

from stepsnet import stats
from stepsnet.compare.builtin import COMPARISONS
from stepsnet.compare.harness import REPO, Comparison, _read_json
from stepsnet.compare.run import run_comparison

# ----------------------------------------------------------------------------------------------------------------
# Pre-registered comparisons and power plans


def protocol_comparison(protocol: Any) -> Comparison:
    """The comparison a protocol (:class:`stepsnet.config.protocol.Protocol`) fixes: its built-in comparison with
    its arguments, recipe, settings, seeds and output folder, nothing else."""
    config = os.path.join(REPO, 'configs', protocol.recipe) if protocol.recipe else None
    try:
        return COMPARISONS[protocol.comparison](**protocol.arguments, seeds=protocol.seeds, config=config,
                                                overrides=protocol.settings, out=protocol.out)
    except TypeError as e:
        raise ValueError(f'protocol {protocol.path!r}: its arguments do not fit the {protocol.comparison!r} '
                         f'comparison ({e})') from None


def run_protocol(path: str, progress: bool = True, train: bool = True) -> Dict[str, Any]:
    """Run a pre-registered comparison exactly as its committed protocol file says, and report it as such.

    Training refuses a protocol file that is not committed, differs from its committed version or was changed by a
    later commit, and a checkout that is not at the protocol's commit or has uncommitted code (train from a
    ``git worktree`` at that commit, so that other work can go on meanwhile). ``train=False`` reports the runs
    finished so far from any checkout, with the deviations (runs not finished yet among them).

    Raises:
        ProtocolError: As above (a ``ValueError``: the CLI prints it in one line).
    """
    from stepsnet.config.protocol import ProtocolError, check_code_committed, load_protocol, registration
    protocol = load_protocol(path)
    reg = registration(path)
    if train:
        if reg['head'] != reg['commit']:
            raise ProtocolError(f'protocol {reg["path"]!r} was registered at {reg["commit"][:12]} but the checkout is '
                                f'at {reg["head"][:12]}; every run trains at the protocol\'s commit: git worktree add '
                                f'DIR {reg["commit"][:12]}, then run it from DIR')
        check_code_committed(REPO)
    comp = protocol_comparison(protocol)
    comp.title = f'{comp.title}: pre-registered replication `{protocol.name}`'
    return run_comparison(comp, progress=progress, train=train, protocol={**protocol.summary(), **reg})


def power_plan(path: str, effect: float, power: float = stats.POWER, alpha: float = stats.ALPHA,
               family: Optional[int] = None) -> List[Dict[str, Any]]:
    """The seeds a new comparison needs to find a true difference ``effect`` with ``power``, from the per-seed
    spread of an earlier report (``path``: its ``results.json`` or folder).

    For every difference of the report: its observed standard deviation and seeds, the seeds needed by the paired
    t-test alone and at ``alpha / family`` (Holm's first step in a family of ``family`` tests, default: the number
    of validation differences of the report), and the simulated power of the sign-flip test at that many seeds.
    """
    if os.path.isdir(path):
        path = os.path.join(path, 'results.json')
    r = _read_json(path)
    if r is None:
        raise FileNotFoundError(f'no results file {path!r}; expected the results.json of a comparison')
    if effect <= 0:
        raise ValueError(f'effect must be > 0 (in the metric\'s units), got {effect}')
    if not 0 < power < 1:
        raise ValueError(f'power must be between 0 and 1, got {power}')
    rows = []
    m = family or sum(1 for p in r['points'] for role in p['diffs'] if not role.endswith('_train'))
    for p in r['points']:
        for role, d in p['diffs'].items():
            t = stats.paired_test(list(d['per_seed'].values()) if 'per_seed' in d else d['values'])
            if t.std is None:
                continue
            alone = stats.seeds_for_power(effect, t.std, alpha, 1, power)
            holm = stats.seeds_for_power(effect, t.std, alpha, m, power)
            rows.append(dict(setting=p['name'], difference=role, n=t.n, std=t.std, seeds_alone=alone,
                             seeds_family=holm, family=m,
                             sign_flip_power=stats.sign_flip_power(effect, t.std, holm, alpha, m)))
    return rows


def plan_markdown(rows: Sequence[Mapping[str, Any]], effect: float, power: float, alpha: float, path: str) -> str:
    """:func:`power_plan` as a markdown table with a sentence on how it was computed."""
    if not rows:
        return f'{path}: no difference with two or more seeds; nothing to plan from.'
    m = rows[0]['family']
    lines = [f'Seeds for {power:.0%} power to find a true difference of {effect:g}, from the spread of {path} '
             f'(paired t-test, non-central t; level {alpha:g} alone and {alpha:g} / {m}, Holm\'s first step in a '
             f'family of {m}; the sign-flip test\'s power at the family\'s count simulated with normal differences):',
             '', '| setting | difference | seeds seen | sd | seeds, alone | seeds, in the family | sign-flip power |',
             '|---|---|---|---|---|---|---|']
    for row in rows:
        lines.append(f'| {row["setting"]} | {row["difference"]} | {row["n"]} | {row["std"]:.3f} | '
                     f'{row["seeds_alone"]} | {row["seeds_family"]} | {row["sign_flip_power"]:.0%} |')
    return '\n'.join(lines)
