"""Run timm's own model tests (``tests/test_models.py`` of timm's source) on the registered Steps models.

    pip download timm==1.0.31 --no-deps --no-binary :all: -d /tmp/timmsrc       # once: timm's sdist, with its tests
    python benchmarks/timm_model_tests.py --timm-src /tmp/timmsrc/timm-1.0.31.tar.gz
    python benchmarks/timm_model_tests.py --timm-src SRC --only test_model_forward_torchscript --no-write
    python benchmarks/timm_model_tests.py --timm-src SRC --as-timm-family --only test_model_forward_intermediates

timm's test file builds its parameter lists from ``timm.list_models(...)`` when it is imported, so this script
imports ``stepsnet`` (which registers every ``steps_*`` / ``test_steps_*`` model with timm) and then runs pytest in
this process on the unmodified file, against the installed timm (imported first: the source tree only supplies the
tests, and its version must be the installed one). ``--timm-src`` is a timm source tree or its sdist (``.tar.gz``,
unpacked into a temporary folder); nothing is downloaded.

Only the items whose ``model_name`` is a Steps model are kept, and timm's own include / exclude filters and size
limits decide which test functions select them. Where those rules select a Steps model for a test that does not fit
it (:data:`KNOWN_EXCLUSIONS`, each with its reason), the item still runs, marked as expected to fail. Some functions
pick models by timm module or by name and so select no Steps model (:data:`NOT_SELECTED`); ``--as-timm-family``
selects each Steps model where timm selects the model it converts (:class:`AsTimmFamily`), which runs those too.

The summary (passed / failed / skipped / expected failures per test function and per model, with the timm version
and the command) is written to ``benchmarks/results/timm_model_tests.{md,json}`` (``timm_model_tests_family.*``
with ``--as-timm-family``; ``--out DIR`` writes them to another folder); the exit status is pytest's.
"""
from __future__ import annotations

import argparse
import fnmatch
import importlib.metadata
import json
import os
import re
import shlex
import sys
import tarfile
import tempfile
import time
from collections import Counter, defaultdict
from typing import Any, Dict, List, Optional, Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, 'benchmarks', 'results')
DEFAULT_MODELS = ('steps_*', 'test_steps_*')
DOWNLOAD = 'pip download timm==VERSION --no-deps --no-binary :all: -d DIR'


def _download_hint() -> str:
    """:data:`DOWNLOAD` for the installed timm (its placeholder left where timm is not installed)."""
    try:
        return DOWNLOAD.replace('VERSION', importlib.metadata.version('timm'))
    except importlib.metadata.PackageNotFoundError:
        return DOWNLOAD

# test functions of timm's file that run on every model their filters select, and why those filters select no Steps
# model (the other functions test a fixed list of timm's own models or layers)
_BY_MODULE = ("selects models by the timm module their entrypoint lives in (`FEAT_INTER_FILTERS`: 'resnet', "
              "'vision_transformer', 'swin_transformer', 'convnext', ...); the Steps entrypoints live in stepsnet's "
              'modules (`--as-timm-family` runs it)')
NOT_SELECTED = {
    'test_model_inference': 'models with released weights and reference outputs on the Hub (`list_pretrained`); '
                            'no Steps weights have been released',
    'test_model_load_pretrained': 'models with pretrained weights (`list_models(pretrained=True)`); none released',
    'test_model_features_pretrained': 'models with pretrained weights (`list_models(pretrained=True)`); none '
                                      'released',
    'test_model_default_cfgs_non_std': "selects the transformer / hybrid models by name (`NON_STD_FILTERS`: "
                                       "'vit_*', 'deit*', 'test_vit*', ...); no Steps name matches "
                                       '(`--as-timm-family` runs it on the Steps ViTs)',
    'test_model_forward_intermediates': _BY_MODULE,
    'test_model_forward_intermediates_features': _BY_MODULE,
    'test_prune_intermediate_layers_contract': _BY_MODULE,
    'test_model_features_space2depth_reduction': "EfficientNet-H/X only (`'efficientnet_[hx]_*'`)",
}

# Steps models a test function selects by timm's rules although the test does not fit them (timm's rules, not the
# models, are at fault): they run, marked as expected to fail; a pass is reported as a failure, so a stale entry shows
KNOWN_EXCLUSIONS: List[Dict[str, Any]] = [
    dict(test='test_model_default_cfgs', models=('steps_deit_*', 'test_steps_vit'),
         reason="a ViT's unpooled features are tokens (B, N, C) and its config has no pool_size, so timm tests its "
                "ViTs with test_model_default_cfgs_non_std, chosen by name (NON_STD_FILTERS: 'vit_*', 'deit*', "
                "'test_vit*'); no Steps name matches, so the standard test, which expects NCHW maps of pool_size, "
                "selects them (timm's own DeiTs fail it the same way; --as-timm-family runs the non-standard test)"),
    dict(test='test_prune_intermediate_layers_contract', models=('test_steps_swin',),
         reason="the test tells NHWC features from NCHW taps by their shapes; test_steps_swin's stage-1 map at its "
                '64x64 input is 16x16 with 16 channels, so both layouts have one shape and the NHWC features are '
                "compared with the NCHW tap unpermuted (they agree once permuted; timm's own Swin of that shape "
                'fails the same way)'),
]

# --as-timm-family: the timm module of the family each stepsnet model module converts (FEAT_INTER_FILTERS selects by
# module); a Steps model's name for timm's name filters is its own without 'steps_' (steps_deit_* -> deit_*)
TIMM_FAMILY = {'steps_resnet': 'resnet', 'steps_vit': 'vision_transformer', 'steps_swin': 'swin_transformer',
               'steps_convnext': 'convnext'}


def _source_root(path: str, tmp: str) -> str:
    """The folder holding ``tests/test_models.py``: ``path`` itself, or the sdist unpacked into ``tmp``."""
    path = os.path.abspath(path)
    if os.path.isfile(path) and path.endswith(('.tar.gz', '.tgz')):
        with tarfile.open(path) as tar:
            if hasattr(tarfile, 'data_filter'):  # Python 3.10.12+ / 3.11.4+: refuse links and paths out of tmp
                tar.extractall(tmp, filter='data')
            else:
                tar.extractall(tmp)  # an sdist the user downloaded from the package index
        entries = [os.path.join(tmp, e) for e in os.listdir(tmp)]
        path = entries[0] if len(entries) == 1 and os.path.isdir(entries[0]) else tmp
    elif not os.path.isdir(path):
        raise SystemExit(f'--timm-src {path}: not a folder or a .tar.gz; expected timm\'s source tree or sdist '
                         f'({_download_hint()})')
    if not os.path.isfile(os.path.join(path, 'tests', 'test_models.py')):
        raise SystemExit(f'--timm-src {path}: no tests/test_models.py; expected timm\'s source tree or sdist, which '
                         f'holds the tests ({_download_hint()})')
    return path


def _source_version(root: str) -> Optional[str]:
    for name, pattern in (('PKG-INFO', r'^Version:\s*(\S+)'),
                          (os.path.join('timm', 'version.py'), r"__version__\s*=\s*['\"]([^'\"]+)")):
        try:
            with open(os.path.join(root, name), encoding='utf-8') as f:
                found = re.search(pattern, f.read(), re.M)
        except OSError:
            continue
        if found:
            return found.group(1)
    return None


def _base_name(model_name: str) -> str:
    return model_name.split('.', 1)[0]  # drop a pretrained tag ('steps_resnet18.untrained')


def _as_list(value: Any) -> List[str]:
    return [v for v in ([value] if isinstance(value, str) else list(value or ())) if v]


class AsTimmFamily:
    """``timm.list_models`` that selects each Steps model as the timm model it converts.

    The other models are listed as timm lists them. A Steps model is listed where its timm counterpart would be:
    the name filters see its name without ``steps_`` (``steps_deit_small_patch16_224`` as ``deit_small_patch16_224``,
    ``test_steps_vit`` as ``test_vit``), the module filter its family's timm module (:data:`TIMM_FAMILY`);
    ``pretrained`` and ``name_matches_cfg`` apply to the model itself.
    """

    def __init__(self, list_models: Any, is_steps: Any):
        from timm.models._registry import _model_to_module
        self.real = list_models
        self.steps = [m for m in list_models() if is_steps(m)]
        unknown = sorted({_model_to_module[m] for m in self.steps} - set(TIMM_FAMILY))
        if unknown:
            raise SystemExit(f'--as-timm-family: no timm family known for the stepsnet modules {unknown}; expected '
                             f'one of {sorted(TIMM_FAMILY)} (add it to TIMM_FAMILY)')
        self.family = {m: (m.replace('steps_', '', 1), TIMM_FAMILY[_model_to_module[m]]) for m in self.steps}

    def __call__(self, filter: Any = '', module: Any = '', pretrained: bool = False, exclude_filters: Any = '',
                 name_matches_cfg: bool = False, include_tags: Optional[bool] = None) -> List[str]:
        from timm.models._registry import _natural_key
        names = [m for m in self.real(filter, module, pretrained, exclude_filters, name_matches_cfg, include_tags)
                 if _base_name(m) not in self.family]
        filters, excludes, modules = _as_list(filter), _as_list(exclude_filters), _as_list(module)
        for model, (alias, family) in self.family.items():
            selected = (not modules or family in modules) and (
                not filters or any(fnmatch.fnmatch(alias, f) for f in filters))
            if not selected or any(fnmatch.fnmatch(alias, f) for f in excludes):
                continue
            names += self.real(model, pretrained=pretrained, name_matches_cfg=name_matches_cfg,
                               include_tags=include_tags)
        return sorted(set(names), key=_natural_key)


class StepsOnly:
    """pytest plugin: keep the items of Steps models, mark the known exclusions, record every outcome."""

    def __init__(self, patterns: Sequence[str], only: Sequence[str], exclusions: Sequence[Dict[str, Any]] = ()):
        self.patterns, self.only, self.exclusions = list(patterns), list(only), list(exclusions)
        self.functions: Dict[str, int] = Counter()  # every test function of the file -> items collected
        self.kept: Dict[str, str] = {}  # nodeid -> test function
        self.models: Dict[str, str] = {}  # nodeid -> model name
        self.results: Dict[str, Dict[str, Any]] = {}
        self.matched: List[Dict[str, Any]] = []  # the exclusions that apply to a kept item

    def is_steps(self, name: Any) -> bool:
        return isinstance(name, str) and any(fnmatch.fnmatch(_base_name(name), p) for p in self.patterns)

    def pytest_collection_modifyitems(self, session, config, items) -> None:
        import pytest
        keep, drop = [], []
        for item in items:
            function = item.originalname or item.name
            self.functions[function] += 1
            model = getattr(item, 'callspec', None) and item.callspec.params.get('model_name')
            if not self.is_steps(model) or (self.only and function not in self.only):
                drop.append(item)
                continue
            keep.append(item)
            self.kept[item.nodeid], self.models[item.nodeid] = function, _base_name(model)
            for rule in self.exclusions:
                if rule['test'] == function and any(fnmatch.fnmatch(_base_name(model), m) for m in rule['models']):
                    item.add_marker(pytest.mark.xfail(reason=f'known exclusion: {rule["reason"]}', strict=True))
                    if rule not in self.matched:
                        self.matched.append(rule)
        if drop:
            config.hook.pytest_deselected(items=drop)
        items[:] = keep

    def pytest_runtest_logreport(self, report) -> None:
        if report.nodeid not in self.kept:
            return
        row = self.results.setdefault(report.nodeid, dict(outcome='passed', seconds=0.0, message=''))
        row['seconds'] += report.duration
        if report.when == 'call' and hasattr(report, 'wasxfail'):
            row['outcome'] = 'xfailed' if report.skipped else 'failed'  # a strict xfail that passed fails
            row['message'] = 'known exclusion (its reason: known_exclusions)'
        elif report.failed:
            row['outcome'] = 'failed' if report.when == 'call' else 'error'
            crash = getattr(report.longrepr, 'reprcrash', None)
            row['message'] = (crash.message if crash else str(report.longrepr)).strip().splitlines()[0][:300]
        elif report.skipped and row['outcome'] == 'passed':
            row['outcome'] = 'skipped'
            reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else str(report.longrepr)
            row['message'] = reason.removeprefix('Skipped: ')


def _summary(plugin: StepsOnly) -> Dict[str, Any]:
    per_test: Dict[str, Counter] = defaultdict(Counter)
    for nodeid, function in plugin.kept.items():
        per_test[function]['collected'] += 1
        per_test[function][plugin.results.get(nodeid, {}).get('outcome', 'not run')] += 1
    totals: Counter = Counter()
    for counts in per_test.values():
        totals.update(counts)
    not_selected = {f: NOT_SELECTED.get(f, 'a fixed list of timm models (or none): not a per-model test')
                    for f in plugin.functions if f not in per_test and not plugin.only}
    rows = [dict(nodeid=n, test=plugin.kept[n], model=plugin.models[n], **plugin.results.get(n, {}))
            for n in plugin.kept]
    for row in rows:
        row['seconds'] = round(row.get('seconds', 0.0), 2)
    return dict(totals=dict(totals), per_test={f: dict(c) for f, c in per_test.items()}, items=rows,
                not_selected=not_selected)


OUTCOMES = ('passed', 'failed', 'error', 'skipped', 'xfailed')
MARKS = dict(passed='pass', failed='FAIL', error='ERROR', skipped='skip', xfailed='xfail')


def _markdown(data: Dict[str, Any]) -> str:
    totals = data['totals']
    selection = (" Each Steps model is selected where timm's filters select the timm model it converts "
                 '(`--as-timm-family`: its name without `steps_`, its family\'s timm module).'
                 if data['as_timm_family'] else " timm's own filters select the test functions each model runs.")
    lines = [
        "# timm's model tests on the Steps models", '',
        f"timm {data['timm']}'s own `tests/test_models.py` (unmodified, from its sdist) run on the installed timm "
        f"with the Steps models registered, keeping the items of {', '.join(f'`{p}`' for p in data['models'])}."
        f"{selection} Command: `{data['command']}` ({data['wall_seconds']:.0f} s wall on "
        f"{data['machine'].get('cpu', 'a CPU')}, {data['machine'].get('torch_threads', '?')} threads; torch "
        f"{data['machine'].get('torch')}, torchvision {data['torchvision']}).", '',
        f"Collected {totals.get('collected', 0)}: " + ', '.join(f'{totals.get(o, 0)} {o}' for o in OUTCOMES) + '.',
        '', '| test function | collected | ' + ' | '.join(OUTCOMES) + ' |', '|---|' + '---|' * (len(OUTCOMES) + 1)]
    for function, counts in data['per_test'].items():
        lines.append(f'| `{function}` | {counts.get("collected", 0)} | '
                     + ' | '.join(str(counts.get(o, 0)) for o in OUTCOMES) + ' |')
    functions = list(data['per_test'])
    models = sorted({r['model'] for r in data['items']})
    cell = {(r['model'], r['test']): MARKS.get(r.get('outcome', ''), '?') for r in data['items']}
    lines += ['', '## Per model', '', '| model | ' + ' | '.join(f'`{f.removeprefix("test_model_")}`' for f in functions)
              + ' |', '|---|' + '---|' * len(functions)]
    lines += [f'| `{m}` | ' + ' | '.join(cell.get((m, f), '') for f in functions) + ' |' for m in models]
    if data['known_exclusions']:
        lines += ['', "## Known exclusions (timm's rules do not fit; run, expected to fail)", '']
        lines += [f'* `{r["test"]}` on {", ".join(f"`{m}`" for m in r["models"])}: {r["reason"]}.'
                  for r in data['known_exclusions']]
    notes = [r for r in data['items'] if r.get('outcome') in ('failed', 'error', 'skipped')]
    if notes:
        lines += ['', '## Failures and skips', '']
        lines += [f'* `{r["nodeid"].split("::")[-1]}`: {r["outcome"]}: {r.get("message", "")}' for r in notes]
    if data['pytest_exit'] not in (0, 1):
        lines += ['', f'pytest exited with status {data["pytest_exit"]} (not a test failure: see its output).']
    if data['not_selected']:
        lines += ['', "## Test functions that select no Steps model (timm's own filters)", '']
        lines += [f'* `{f}`: {why}' for f, why in data['not_selected'].items()
                  if not why.startswith('a fixed list')]
        fixed = [f for f, why in data['not_selected'].items() if why.startswith('a fixed list')]
        lines += ['', f'{len(fixed)} more test functions test a fixed list of timm models or timm layers.']
    return '\n'.join(lines) + '\n'


def main(argv: Optional[Sequence[str]] = None) -> int:
    download = _download_hint()
    p = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        epilog=f'Get the source of the installed timm once with: {download}')
    p.add_argument('--timm-src', required=True, metavar='PATH',
                   help=f'timm source tree or sdist (.tar.gz) of the installed version; {download}')
    p.add_argument('--models', nargs='+', default=list(DEFAULT_MODELS), metavar='PATTERN',
                   help='model names to keep (fnmatch patterns; default: %(default)s)')
    p.add_argument('--only', nargs='+', default=[], metavar='TEST', help='only these test functions')
    p.add_argument('--as-timm-family', action='store_true',
                   help="select each Steps model where timm's filters select the timm model it converts (by name "
                        'without steps_, and by its family\'s timm module), which also runs the forward_intermediates, '
                        'pruning and non-standard config tests on them; results go to timm_model_tests_family.*')
    p.add_argument('--out', default=RESULTS, metavar='DIR',
                   help='folder of the result files timm_model_tests{,_family}.{md,json} (default: %(default)s)')
    p.add_argument('--no-write', action='store_true', help='print the summary, write no result files')
    p.add_argument('pytest_args', nargs='*', help='extra pytest arguments, after --')
    args = p.parse_args(argv)

    import pytest
    import timm
    import torchvision

    import stepsnet  # noqa: F401  (registers the Steps models with timm, before the test file lists them)
    from stepsnet.utils.provenance import machine_info

    with tempfile.TemporaryDirectory() as tmp:
        root = _source_root(args.timm_src, tmp)
        version = _source_version(root)
        if version != timm.__version__:
            found = f'timm {version}' if version else 'of no known version (no PKG-INFO or timm/version.py)'
            raise SystemExit(f'--timm-src {args.timm_src} is {found} but timm {timm.__version__} is installed; '
                             'expected the tests of the installed version '
                             f'({_download_hint()})')
        plugin = StepsOnly(args.models, args.only, KNOWN_EXCLUSIONS)
        real_list_models = timm.list_models
        if args.as_timm_family:  # the test file reads it (``from timm import list_models``) when it is imported
            timm.list_models = AsTimmFamily(real_list_models, plugin.is_steps)
        pytest_args = [os.path.join(root, 'tests', 'test_models.py'), '--rootdir', root, '--import-mode=importlib',
                       '-p', 'no:cacheprovider', '-W', 'ignore::pytest.PytestUnknownMarkWarning', '-q', '-rfE',
                       *args.pytest_args]
        if os.path.isfile(os.path.join(root, 'pyproject.toml')):
            pytest_args[1:1] = ['-c', os.path.join(root, 'pyproject.toml')]
        start = time.perf_counter()
        try:
            code = pytest.main(pytest_args, plugins=[plugin])
        finally:
            timm.list_models = real_list_models
        wall = time.perf_counter() - start
    command = 'python benchmarks/timm_model_tests.py ' + shlex.join(argv if argv is not None else sys.argv[1:])
    data = dict(timm=timm.__version__, timm_path=os.path.dirname(timm.__file__),
                torchvision=torchvision.__version__,
                command=command, models=args.models, only=args.only, as_timm_family=args.as_timm_family,
                pytest_exit=int(code),
                wall_seconds=round(wall, 1), github_actions='GITHUB_ACTIONS' in os.environ,
                known_exclusions=plugin.matched, machine=machine_info(), **_summary(plugin))
    text = _markdown(data)
    print(text)
    if not args.no_write:
        out = os.path.join(args.out, 'timm_model_tests' + ('_family' if args.as_timm_family else ''))
        os.makedirs(args.out, exist_ok=True)
        from stepsnet.utils.checkpoint import atomic_write_text
        atomic_write_text(out + '.json', json.dumps(data, indent=2) + '\n')
        atomic_write_text(out + '.md', text)
    return int(code)


if __name__ == '__main__':
    sys.exit(main())
