"""A comparison's verdicts and report: every paired difference tested in one Holm family per role (:func:`judge`), the
markdown report and its plots (:func:`write_report`, through :mod:`stepsnet.utils.figures`), and a report written
again from its ``results.json`` alone (:func:`render_report`)."""
from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence

from stepsnet import stats
from stepsnet.compare.convergence import convergence_lines
from stepsnet.compare.harness import ADAPTERS
from stepsnet.utils.checkpoint import atomic_write_text
from stepsnet.utils.figures import pyplot, save_figure
from stepsnet.utils.names import plural

# ----------------------------------------------------------------------------------------------------------------
# Statistics: every paired difference of a report, one Holm family


def _differences(r: Mapping[str, Any]) -> List[Dict[str, Any]]:
    """Every paired difference of a report, in report order: each point's diffs, then the changes with depth."""
    return [d for p in r['points'] for d in p['diffs'].values()] + list((r.get('trend') or {}).values())


def _families(r: Mapping[str, Any]) -> List[str]:
    """The Holm family of each difference of :func:`_differences`: under a protocol, ``primary`` (the validation
    differences of the arms it names, at every point) and ``secondary`` (everything else); without one, a single
    family ``report``."""
    protocol = r.get('protocol')
    if not protocol:
        return ['report'] * len(_differences(r))
    roles = set(protocol['primary']['differences'])
    return (['primary' if role in roles else 'secondary' for p in r['points'] for role in p['diffs']]
            + ['secondary'] * len(r.get('trend') or {}))


DECIDED_BY = stats.RULES


def judge(r: Dict[str, Any]) -> Dict[str, Any]:
    """Fill in the statistics of every paired difference of results ``r`` (in place; returned).

    Each difference's per-seed values (``per_seed``, or ``values`` in seed order) give a paired t-test
    (:class:`~stepsnet.stats.PairedTest`, its fields at the top level) and an exact sign-flip test
    (:class:`~stepsnet.stats.SignFlipTest`, under ``sign_flip``). Holm's correction runs within each family
    (:func:`_families`): one family for an exploratory report, primary and secondary under a protocol. The verdict
    (``outcome``, ``verdict``) is the protocol's primary test's, or, without a protocol, needs both tests;
    ``detectable`` is the difference found with 80% power (:class:`~stepsnet.stats.Detectable`); under a protocol,
    each primary difference also gets ``power``: the power the design had for the protocol's planned effect at the
    spread observed. ``r['statistics']`` says how.
    """
    diffs = _differences(r)
    families = _families(r)
    protocol = r.get('protocol')
    alpha = float(protocol['primary']['alpha']) if protocol else stats.ALPHA
    rule = protocol['primary']['test'] if protocol else 'both'
    n_trend = len(r.get('trend') or {})
    higher = [r['higher_is_better']] * (len(diffs) - n_trend) + [None] * n_trend
    values = [list(d['per_seed'].values()) if 'per_seed' in d else d['values'] for d in diffs]
    tests: List[Any] = [stats.paired_test(v) for v in values]
    flips: List[Any] = [stats.sign_flip_test(v) for v in values]
    dets: List[Any] = [None] * len(diffs)
    sizes = {}
    for fam in dict.fromkeys(families):
        idx = [i for i, f in enumerate(families) if f == fam]
        for i, t, s, det in zip(idx, stats.adjust([tests[i] for i in idx]), stats.adjust_p([flips[i] for i in idx]),
                                stats.detectable([tests[i] for i in idx], alpha)):
            tests[i], flips[i], dets[i] = t, s, det
        sizes[fam] = sum(tests[i].p is not None for i in idx)
    for d, t, s, det, h, fam in zip(diffs, tests, flips, dets, higher, families):
        p = stats.deciding_p(t, s, rule)
        d.update(t.to_dict(), sign_flip=s.to_dict(), family=fam, outcome=stats.outcome(t, h, alpha, p=p),
                 verdict=stats.verdict(t, h, alpha, digits=_digits(r), p=p, p_name=stats.p_name(rule)),
                 detectable=det.to_dict())
        d.pop('power', None)
        if protocol and fam == 'primary' and protocol['primary'].get('effect') and t.std is not None:
            effect, m = float(protocol['primary']['effect']), max(1, sizes['primary'])
            d['power'] = dict(effect=effect, divisor=m, t=stats.power_t(effect, t.std, t.n, alpha, m),
                              sign_flip=stats.sign_flip_power(effect, t.std, t.n, alpha, m))
    r['statistics'] = dict(
        test='two-sided paired t-test over seeds (95% confidence interval of the mean from the t distribution) and '
             'the exact two-sided paired sign-flip test (all 2^n sign patterns up to n = '
             f'{stats.EXACT_MAX}; ties |d| <= {stats.TIE_TOLERANCE:g} left out)',
        correction=('Holm within each family: ' + ', '.join(f'{k} ({v} differences)' for k, v in sizes.items())),
        decided_by=DECIDED_BY[rule], alpha=alpha, differences=sum(sizes.values()), families=sizes,
        detectable=f'the true difference found with {stats.POWER:.0%} power by the t-test, alone / at its Holm rank')
    return r


def _digits(r: Mapping[str, Any]) -> int:
    return ADAPTERS[r['task']].digits


# ----------------------------------------------------------------------------------------------------------------
# Report and plots


def write_report(r: Mapping[str, Any], out: str, curves: bool = True) -> str:
    """Write ``results.json``, ``report.md``, ``depth.png`` (a comparison over depth) and, where the results hold
    the runs' curves and ``curves`` is set, ``curves.png`` into ``out``; print and return the report."""
    os.makedirs(out, exist_ok=True)
    atomic_write_text(os.path.join(out, 'results.json'), json.dumps(r, indent=2))
    if curves and all('curves' in a for p in r['points'] for a in p['arms'].values()):
        _plot_curves(r, os.path.join(out, 'curves.png'))
    if any(p['x'] is not None for p in r['points']):
        _plot_depth(r, os.path.join(out, 'depth.png'))
    report = report_markdown(r)
    atomic_write_text(os.path.join(out, 'report.md'), report)
    print(report)
    return report


def render_report(path: str, out: Optional[str] = None) -> Dict[str, Any]:
    """Render a comparison's report again from its ``results.json`` alone (no training, no run folders).

    ``path`` is the results file or its folder; the report, ``results.json`` (with the statistics of
    :func:`judge`) and the plots go to ``out`` (default: the same folder). Results written before the statistics,
    the machine or the curves were recorded are completed from what they hold: statistics from the per-seed values,
    the summed training time from the per-arm means; their machine is "not recorded" and their ``curves.png`` is
    left as it is.
    """
    if os.path.isdir(path):
        path = os.path.join(path, 'results.json')
    if not os.path.isfile(path):
        raise FileNotFoundError(f'no results file {path!r}; expected the results.json of a comparison')
    with open(path, encoding='utf-8') as f:
        r = json.load(f)
    if 'machines' not in r:
        runs = sum(a['stats']['n'] for p in r['points'] for a in p['arms'].values())
        r.update(machines=[], runs_without_machine=runs)
    if 'train_time_s' not in r:
        r['train_time_s'] = round(sum((a.get('train_time') or 0.0) * a['stats']['n']
                                      for p in r['points'] for a in p['arms'].values()), 1)
    for p in r['points']:  # results before per-seed training differences were kept: their values are in seed order
        for role, d in p['diffs'].items():
            if 'per_seed' not in d and role.endswith('_train'):
                d['per_seed'] = dict(zip(p['arms'][role[:-6]]['per_seed'], d['values']))
    for t in (r.get('trend') or {}).values():
        if 'per_seed' not in t:
            t['per_seed'] = dict(zip(r['points'][0]['arms']['baseline']['per_seed'], t['values']))
    write_report(judge(r), out or os.path.dirname(os.path.abspath(path)))
    return r


def _fmt(stats_: Mapping[str, Any], digits: int, sign: bool = False) -> str:
    if stats_['mean'] is None:
        return 'not run'
    s = f'{stats_["mean"]:+.{digits}f}' if sign else f'{stats_["mean"]:.{digits}f}'
    return s + (f' ± {stats_["std"]:.{digits}f}' if stats_['std'] is not None else '')


def _num(v: Optional[float], digits: int, sign: bool = True) -> str:
    return '-' if v is None else (f'{v:+.{digits}f}' if sign else f'{v:.{digits}f}')


def _count(n: int, word: str) -> str:
    """``1 difference``, ``2 differences``."""
    return f'{n} {word}' + ('' if n == 1 else 's')


VERDICT_HEAD = ('| setting | difference | family | mean ± sd | 95% CI | n | t-test p | adjusted | sign-flip p '
                '| adjusted | same sign | detectable (80% power) | verdict |')


def _interval(d: Mapping[str, Any], digits: int, bounds: Optional[Sequence[float]]) -> str:
    """The 95% interval, as one number when it is a point, and marked where the metric's range cuts it."""
    lo, hi = d.get('ci_low'), d.get('ci_high')
    if lo is None:
        return '-'
    if d.get('n', 0) < 3:
        return f'- ({d.get("n")} seeds: too few for an interval)'
    if f'{lo:+.{digits}f}' == f'{hi:+.{digits}f}':
        return f'{lo:+.{digits}f} (every seed the same)'
    text = f'{lo:+.{digits}f} to {hi:+.{digits}f}'
    if bounds is not None and (lo < bounds[0] or hi > bounds[1]):
        text += f' (cut by the metric\'s range {bounds[0]:+g} to {bounds[1]:+g})'
    return text


def _bounds(r: Mapping[str, Any]) -> Optional[Sequence[float]]:
    """The range a difference of this report's metric can take (top-1 in percent: -100 to +100), or None."""
    return (-100.0, 100.0) if '%' in r['metric'] else None


def _verdict_rows(r: Mapping[str, Any], digits: int) -> List[str]:
    rows = [VERDICT_HEAD, '|' + '---|' * (VERDICT_HEAD.count('|') - 1)]
    bounds = _bounds(r)

    def row(setting: str, what: str, d: Mapping[str, Any]) -> str:
        det = d['detectable']
        detect = '-' if det['unadjusted'] is None else f'{det["unadjusted"]:.{digits}f} / {det["holm"]:.{digits}f}'
        t = stats.PairedTest.from_dict(d)
        flip = d.get('sign_flip') or {}
        mean = '-' if t.mean is None else f'{t.mean:+.{digits}f}' + ('' if t.std is None else f' ± {t.std:.{digits}f}')
        same = f'{t.same_sign}/{t.n}' + (f' ({t.ties} tied)' if t.ties else '')
        cells = [setting, what, d.get('family', 'report'), mean, _interval(d, digits, bounds), str(t.n),
                 stats.format_p(t.p), stats.format_p(t.p_adj), stats.format_p(flip.get('p')),
                 stats.format_p(flip.get('p_adj')), same, detect, _short(d)]
        return '| ' + ' | '.join(cells) + ' |'

    for p in r['points']:
        for role, d in p['diffs'].items():
            what = f'{role[:-6]} − baseline, training images' if role.endswith('_train') else f'{role} − baseline'
            rows.append(row(p['name'], what, d))
    for role, t in (r.get('trend') or {}).items():
        rows.append(row('change with depth', f'({role} − baseline at {t["deep"]}) − (at {t["shallow"]})', t))
    return rows


def _short(d: Mapping[str, Any]) -> str:
    """The verdict without its parenthesis (the table has the numbers)."""
    return d['verdict'].split(' (')[0]


def _settles(r: Mapping[str, Any], digits: int) -> str:
    """What the seeds of this report can and cannot settle: the differences found with 80% power, and under a
    protocol the power the design had for its planned effect."""
    dets = [d['detectable'] for d in _differences(r) if d['detectable']['holm'] is not None]
    if not dets:
        return 'One seed per arm: no difference can be tested; run more seeds.'
    n = max(d['n'] for d in dets)
    lo, hi = min(d['holm'] for d in dets), max(d['holm'] for d in dets)
    lo1, hi1 = min(d['unadjusted'] for d in dets), max(d['unadjusted'] for d in dets)

    def span(a: float, b: float) -> str:
        lo_, hi_ = f'{a:.{digits}f}', f'{b:.{digits}f}'
        return lo_ if lo_ == hi_ else f'between {lo_} and {hi_}'

    text = (f'What {n} seeds can settle: at the spread seen here, a true difference of {span(lo, hi)} is found '
            f'with 80% power, depending on the difference (at its Holm rank in its family; {span(lo1, hi1)} tested '
            'alone); a smaller one is found less often than four times in five.')
    if n < 6 and r['statistics'].get('decided_by') != stats.RULES['t']:
        text += (f' With {n} seeds the sign-flip test cannot go below p = {2 / 2 ** n:.3g}, so no difference can be '
                 'called here: a verdict needs the sign-flip test too, and it needs at least 6 seeds, all pointing '
                 'one way, to reach p < 0.05.')
    powered = [(p['name'], d['power']) for p in r['points'] for d in p['diffs'].values() if d.get('power')]
    if powered:
        e = powered[0][1]['effect']
        text += (f' The power this design had for the planned difference of {e:g} at the spread observed (level '
                 f'{r["statistics"]["alpha"]:g} / {powered[0][1]["divisor"]}, Holm\'s first step): ' +
                 '; '.join(f'{name} {w["t"]:.0%} (t-test), {w["sign_flip"]:.0%} (sign-flip, simulated)'
                           for name, w in powered) + '.')
    return text


def _registration_lines(r: Mapping[str, Any]) -> str:
    """The report's first line: pre-registered (commit, date, file) or exploratory."""
    p = r.get('protocol')
    if not p:
        return ('**Exploratory.** No protocol was committed before these runs: their seeds, settings and tests were '
                'not fixed in advance, and the verdicts below are descriptive.')
    return (f'**Pre-registered** at commit {p["commit"][:12]} ({p["date"][:10]}): protocol `{p["path"]}` (blob '
            f'{p["blob"][:12]}); primary endpoint: {p["primary"].get("endpoint") or "the primary differences"}, '
            f'decided by {DECIDED_BY[p["primary"]["test"]]} with Holm across the primary family at '
            f'{float(p["primary"]["alpha"]):g}.')


def _deviation_lines(r: Mapping[str, Any]) -> List[str]:
    devs = r.get('deviations') or []
    machines = len(r.get('machines') or [])
    head = (f'**Deviations from the protocol:** {"none" if not devs else _count(len(devs), "deviation")}. The runs '
            f'trained on {_count(machines, "machine")}; both arms of a seed at one setting trained on the same '
            'machine except where listed.')
    return [head] + [f'- {d}' for d in devs]


def _time_line(r: Mapping[str, Any]) -> str:
    runs = sum(a['stats']['n'] for p in r['points'] for a in p['arms'].values())
    line = (f'Training time {r["train_time_s"] / 60:.1f} min summed over {runs} runs, measured as each run trained '
            f'({plural(r["jobs"], "run")} at a time, {plural(r["threads"], "thread")} each), torch {r["torch"]}.')
    if 'trained' in r:
        line += (f' This invocation trained {plural(r["trained"], "run")} and reused {r["reused"]} finished before; '
                 f'it took {r["wall_time_s"] / 60:.1f} min.')
    elif r.get('wall_time_s'):
        line += f' Wall time {r["wall_time_s"] / 60:.1f} min.'
    return line


def report_markdown(r: Mapping[str, Any]) -> str:
    """The comparison as markdown: one row per point and arm, the paired tests and verdicts, the machine."""
    higher = r['higher_is_better']
    adapter = ADAPTERS[r['task']]
    digits = adapter.digits
    n = len(r['seeds'])
    lines = [f'# {r["title"]}', '', _registration_lines(r), '']
    if r.get('context'):
        lines += [r['context'], '']
    lines += [f'Metric: {r["metric"]} on {adapter.held_out(r.get("config") or {})}, after the last step; '
              f'{"higher" if higher else "lower"} is better. Mean ± standard deviation over {plural(n, "seed")} '
              f'{r["seeds"]}; a difference is paired by seed (same initialisation seed and batches for every arm).',
              '']
    train = adapter.train_metric
    head = '| setting | arm | model | params | MFLOPs (MACs) | blocks | layers | metric | − baseline |'
    lines += [head + (f' {train} | − baseline |' if train else ''),
              '|---|---|---|---|---|---|---|---|---|' + ('---|---|' if train else '')]
    for p in r['points']:
        for role, a in p['arms'].items():
            diff = '' if role == 'baseline' else _fmt(p['diffs'][role], digits, sign=True)
            macs = f'{a["macs"] / 1e6:.2f}' if a.get('macs') else '-'
            params = f'{a["params"] / 1e6:.3f}M' if a.get('params') else '-'
            row = (f'| {p["name"]} | {role} | {a["label"]} | {params} | {macs} | {a.get("blocks") or "-"} | '
                   f'{a.get("layers") or "-"} | {_fmt(a["stats"], digits)} | {diff} |')
            if train:
                tdiff = '' if role == 'baseline' else _fmt(p['diffs'].get(role + '_train', {'mean': None}), digits,
                                                           sign=True)
                row += f' {_fmt(a["train_stats"], digits)} | {tdiff} |'
            lines.append(row)
    st = r['statistics']
    fams = st.get('families') or {'report': st['differences']}
    family_words = (f'across all {_count(st["differences"], "tested difference")} of this report' if 'report' in fams
                    else 'within the primary family (' + _count(fams.get('primary', 0), 'difference') + ', the '
                    'protocol\'s endpoint) and, apart, within the secondary family (' +
                    _count(fams.get('secondary', 0), 'difference') + ')')
    lines += ['', f'**What this run shows.** Each difference is paired by seed and tested twice, two-sided: with the '
              'paired t-test (which assumes normal differences) and with the exact sign-flip test (which does not: '
              'every sign pattern of the differences is enumerated; ties, |d| below '
              f'{stats.TIE_TOLERANCE:g}, carry no sign). The p values are adjusted with Holm\'s method {family_words}; '
              'a difference is called ahead or behind only where the adjusted p of '
              f'{st.get("decided_by", DECIDED_BY["t"])} is below {st["alpha"]:g}. "detectable (80% power)" is the '
              'true difference these seeds would find four times in five at the spread observed: tested alone / at '
              'its Holm rank in its family.', '']
    lines += _verdict_rows(r, digits)
    lines += ['', _settles(r, digits)]
    if r.get('convergence'):
        lines += ['', *convergence_lines(r['convergence'], digits, train or 'training metric')]
    if r.get('protocol'):
        lines += ['', *_deviation_lines(r)]
    capped = [(p['name'], a['label'], a['capped']) for p in r['points'] for a in p['arms'].values() if a['capped']]
    if capped:
        lines.append('')
    for name, label, seeds in capped:
        lines.append(f'- {name} / {label} stopped at the time limit for seeds {seeds}: it saw fewer tokens than '
                     'planned (use a fixed step count for equal data).')
    lines += ['', '![curves](curves.png)', '']
    if any(p['x'] is not None for p in r['points']):
        lines += ['![depth](depth.png)', '']
    lines += [stats.machine_sentence(r.get('machines') or [], r.get('runs_without_machine', 0)), '', _time_line(r)]
    return '\n'.join(lines) + '\n'


def _role_colours(roles) -> Dict[str, str]:
    """One colour per arm role: the baseline grey, Steps arms warm, controls green, anything else from a cycle."""
    fixed = {'baseline': '#404040', 'control': 'tab:green'}
    warm = iter(['#e07040', '#3070c0', '#a040a0', '#c0a000'])
    return {role: fixed.get(role) or next(warm, 'k') for role in roles}


def _plot_curves(r: Mapping[str, Any], path: str) -> None:
    plt = pyplot()
    from matplotlib.ticker import EngFormatter, MaxNLocator
    points = r['points']
    fig, axes = plt.subplots(1, len(points), figsize=(5 * len(points), 3.8), squeeze=False)
    colours = _role_colours(dict.fromkeys(role for p in points for role in p['arms']))
    for ax, point in zip(axes[0], points):
        for role, arm in point['arms'].items():
            for i, curve in enumerate(c for c in arm['curves'].values() if c):
                ax.plot(*zip(*curve), color=colours[role], marker='o', ms=2, lw=1, alpha=0.7,
                        label=arm['label'] if i == 0 else None)
        ax.set(title=point['name'], xlabel=ADAPTERS[r['task']].seen, ylabel=r['metric'])
        # few ticks in engineering notation (42k, 1.2M): raw counts overlap at this width
        ax.xaxis.set_major_locator(MaxNLocator(5))
        ax.xaxis.set_major_formatter(EngFormatter(sep=''))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)


def _plot_depth(r: Mapping[str, Any], path: str) -> None:
    """Fig. 1 axes: metric against layers, one line per arm, markers sized by FLOPs, error bars = std."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.2))
    roles = dict.fromkeys(role for p in r['points'] for role in p['arms'])
    colours = _role_colours(roles)
    styles = ['-', '--', ':', '-.']
    macs = [a['macs'] for p in r['points'] for a in p['arms'].values() if a.get('macs')]
    scale = 400 / max(macs) if macs else 1.0
    for role in roles:
        pts = [(p['arms'][role]['layers'], p['arms'][role]['stats'], p['arms'][role].get('macs') or 0,
                p['arms'][role]['label']) for p in r['points'] if role in p['arms'] and p['arms'][role]['layers']]
        pts = [t for t in pts if t[1]['mean'] is not None]
        if not pts:
            continue
        xs, ys = [t[0] for t in pts], [t[1]['mean'] for t in pts]
        errs = [t[1]['std'] or 0.0 for t in pts]
        ax.errorbar(xs, ys, yerr=errs, color=colours[role], lw=1.5, capsize=3,
                    ls=styles[list(roles).index(role) % len(styles)], label='Steps' if role == 'steps' else role)
        ax.scatter(xs, ys, s=[max(20.0, t[2] * scale) for t in pts], color=colours[role], alpha=0.5,
                   edgecolor='k', zorder=3)
    ax.set(xlabel='#layers', ylabel=r['metric'], title='accuracy against depth (marker area: FLOPs)')
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
