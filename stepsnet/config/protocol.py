"""Pre-registered comparisons: a protocol file fixed in git before the first run, and its registration.

A protocol (``configs/protocols/*.yaml``) says everything a confirmatory comparison decides before it sees data:
the built-in comparison and its arguments (points, arms and pairing), the recipe and the fields it changes, the
seeds, the primary endpoint, the primary test and the family it is corrected in, the planned effect and power, the
secondary analyses and the stopping rule. ``stepsnet compare --protocol FILE`` runs exactly that and nothing else.

Registration is git's record: the commit that added the file is the protocol's commit, and the run refuses a file
that is not committed, that differs from its committed version, or that was changed by a later commit (more seeds
or another endpoint is a new protocol file, not an edit). The runs record the commit they trained at; a run
trained at any other commit is a deviation, and so is a planned run that did not finish. This module loads
neither torch nor timm.

Example (the fields; ``configs/protocols/depth_replication.yaml`` is a complete one)::

    name: depth_replication
    comparison: depth                  # stepsnet compare TASK
    recipe: cls/depth_digits.yaml      # under configs/
    settings: {epochs: 30}             # recipe fields changed for every arm
    arguments: {blocks: [4, 8, 16, 32], width: 80, heads: 4, pairings: [compute], jobs: 2, threads: 1}
    seeds: {first: 100, count: 21}
    out: runs/protocols/depth_replication
    primary:
      differences: [steps]             # the arms whose difference to the baseline, at every point, is the endpoint
      test: sign-flip                  # sign-flip (exact permutation) or t
      alpha: 0.05                      # family-wise, Holm across the primary differences
      effect: 1.0                      # the difference the design is powered for, in the metric's units
      power: 0.8
    hypothesis: ...
    stopping_rule: ...
    secondary: [...]
"""
from __future__ import annotations

import dataclasses
import os
import subprocess
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional

import yaml

__all__ = ['Protocol', 'ProtocolError', 'load_protocol', 'registration', 'check_code_committed', 'TESTS',
           'COMPARISON_NAMES']

TESTS = ('sign-flip', 't')  # the primary tests a protocol may declare
COMPARISON_NAMES = ('depth', 'lm', 'cls')  # the built-in comparisons of stepsnet.compare
_FIELDS = {'name', 'comparison', 'recipe', 'settings', 'arguments', 'seeds', 'out', 'primary', 'hypothesis',
           'stopping_rule', 'secondary', 'plan'}
_PRIMARY = {'differences', 'test', 'alpha', 'effect', 'power', 'endpoint'}


class ProtocolError(ValueError):
    """A protocol file that is malformed, not committed, or changed after it was registered."""


@dataclass(frozen=True)
class Protocol:
    """One pre-registered comparison (the fields of its YAML file; see the module docstring).

    Attributes:
        path: The file, as given.
        name: Its name (the report's and the output folder's).
        comparison: A built-in comparison (``depth``, ``lm``, ``cls``).
        recipe: The recipe under ``configs/`` (None: the comparison's default).
        settings: Recipe fields changed for every arm.
        arguments: Keyword arguments of the comparison function (points, arms, jobs, threads).
        seeds: The seeds, in training order.
        out: Output folder of the runs and the report.
        primary: The primary analysis: ``differences`` (arm roles), ``test``, ``alpha``, ``effect``, ``power``,
            ``endpoint`` (words).
        hypothesis: What is tested, in words.
        stopping_rule: When the experiment ends, in words.
        secondary: The secondary analyses, in words.
        plan: How the number of seeds was chosen, in words.
    """
    path: str
    name: str
    comparison: str
    recipe: Optional[str]
    settings: Dict[str, Any]
    arguments: Dict[str, Any]
    seeds: List[int]
    out: str
    primary: Dict[str, Any]
    hypothesis: str = ''
    stopping_rule: str = ''
    secondary: List[str] = field(default_factory=list)
    plan: str = ''

    def summary(self) -> Dict[str, Any]:
        """What a results file records of the protocol (plain JSON types)."""
        return {k: v for k, v in dataclasses.asdict(self).items()}


def load_protocol(path: str) -> Protocol:
    """Read and check a protocol file.

    Raises:
        FileNotFoundError: No such file.
        ProtocolError: A field is missing, unknown or of the wrong kind.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f'no protocol file {path!r}; expected a YAML file such as '
                                'configs/protocols/depth_replication.yaml')
    with open(path, encoding='utf-8') as f:
        try:
            d = yaml.safe_load(f)
        except yaml.YAMLError as e:
            raise ProtocolError(f'protocol {path!r} is not valid YAML: {" ".join(str(e).split())}') from None
    if not isinstance(d, dict):
        raise ProtocolError(f'protocol {path!r} must be a mapping of fields, got {type(d).__name__}')
    unknown = sorted(set(d) - _FIELDS)
    if unknown:
        raise ProtocolError(f'protocol {path!r} has unknown field(s) {unknown}; expected some of {sorted(_FIELDS)}')
    for key in ('name', 'comparison', 'seeds', 'primary'):
        if key not in d:
            raise ProtocolError(f'protocol {path!r} has no {key!r}; a protocol names its comparison, seeds and '
                                'primary analysis before it runs')
    if d['comparison'] not in COMPARISON_NAMES:
        raise ProtocolError(f'protocol {path!r}: comparison must be one of {list(COMPARISON_NAMES)}, got '
                            f'{d["comparison"]!r}')
    seeds = d['seeds']
    if isinstance(seeds, dict):
        if set(seeds) != {'first', 'count'} or not all(isinstance(v, int) for v in seeds.values()) \
                or seeds['count'] < 2:
            raise ProtocolError(f'protocol {path!r}: seeds must be {{first: K, count: N}} with N >= 2, got {seeds}')
        seeds = list(range(seeds['first'], seeds['first'] + seeds['count']))
    elif not (isinstance(seeds, list) and len(seeds) >= 2 and all(isinstance(s, int) for s in seeds)
              and len(set(seeds)) == len(seeds)):
        raise ProtocolError(f'protocol {path!r}: seeds must be a list of at least two distinct integers or '
                            f'{{first: K, count: N}}, got {seeds!r}')
    primary = d['primary']
    if not isinstance(primary, dict) or set(primary) - _PRIMARY:
        raise ProtocolError(f'protocol {path!r}: primary must be a mapping with keys among {sorted(_PRIMARY)}, got '
                            f'{primary!r}')
    if primary.get('test') not in TESTS:
        raise ProtocolError(f'protocol {path!r}: primary test must be one of {list(TESTS)}, got '
                            f'{primary.get("test")!r}')
    diffs = primary.get('differences')
    if not (isinstance(diffs, list) and diffs and all(isinstance(r, str) and r != 'baseline' for r in diffs)):
        raise ProtocolError(f'protocol {path!r}: primary differences must list arm roles other than baseline (e.g. '
                            f'[steps]), got {diffs!r}')
    alpha = primary.get('alpha', 0.05)
    if not (isinstance(alpha, (int, float)) and 0 < alpha < 1):
        raise ProtocolError(f'protocol {path!r}: primary alpha must be in (0, 1), got {alpha!r}')
    for key, kind in (('settings', dict), ('arguments', dict), ('secondary', list)):
        if not isinstance(d.get(key, kind()), kind):
            raise ProtocolError(f'protocol {path!r}: {key} must be a {kind.__name__}, got {d[key]!r}')
    for key in ('seeds', 'out', 'config', 'overrides'):
        if key in (d.get('arguments') or {}):
            raise ProtocolError(f'protocol {path!r}: arguments may not set {key!r}; it is a field of the protocol '
                                'itself (seeds, out, recipe, settings)')
    return Protocol(
        path=path, name=str(d['name']), comparison=d['comparison'], recipe=d.get('recipe'),
        settings=dict(d.get('settings') or {}), arguments=dict(d.get('arguments') or {}), seeds=seeds,
        out=str(d.get('out') or os.path.join('runs', 'protocols', str(d['name']))),
        primary=dict(primary, alpha=float(alpha), power=float(primary.get('power', 0.8))),
        hypothesis=str(d.get('hypothesis') or ''), stopping_rule=str(d.get('stopping_rule') or ''),
        secondary=[str(s) for s in d.get('secondary') or []], plan=str(d.get('plan') or ''))


def _git(args: List[str], cwd: str) -> str:
    try:
        out = subprocess.run(['git', *args], cwd=cwd, capture_output=True, text=True, check=True)
    except FileNotFoundError:
        raise ProtocolError('git is not installed: a protocol is registered by its commit') from None
    except subprocess.CalledProcessError as e:
        raise ProtocolError(f'git {" ".join(args)} failed in {cwd!r}: {" ".join(e.stderr.split())}') from None
    return out.stdout.strip()


def registration(path: str) -> Dict[str, Any]:
    """The protocol's registration: the commit that added the file, its date, the file's blob, and the checkout's
    HEAD, after checking that the file on disk is exactly what that commit registered.

    Returns:
        ``path`` (relative to the repository), ``commit``, ``date`` (ISO 8601, the commit's), ``blob`` (git's
        hash of the file), ``head`` (the commit checked out now).

    Raises:
        ProtocolError: Not in a git checkout, not committed, modified since its commit, or changed by a later commit.
    """
    path = os.path.abspath(path)
    folder = os.path.dirname(path)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f'no protocol file {path!r}')
    try:
        top = _git(['rev-parse', '--show-toplevel'], folder)
    except ProtocolError:
        raise ProtocolError(f'protocol {path!r} is not in a git checkout; a protocol is registered by the commit '
                            'that added it') from None
    rel = os.path.relpath(os.path.realpath(path), os.path.realpath(top))
    if not _git(['ls-files', '--', rel], top):
        raise ProtocolError(f'protocol {rel!r} is not committed; commit it before the first run (that commit is '
                            'its registration)')
    if _git(['status', '--porcelain', '--', rel], top):
        raise ProtocolError(f'protocol {rel!r} differs from its committed version; run it as committed, or commit '
                            'a new protocol file')
    added = _git(['log', '--diff-filter=A', '--format=%H %cI', '--', rel], top).splitlines()
    if not added:
        raise ProtocolError(f'protocol {rel!r} has no commit that added it')
    commit, date = added[-1].split(' ', 1)
    blob = _git(['rev-parse', f'HEAD:{rel}'], top)
    registered = _git(['rev-parse', f'{commit}:{rel}'], top)
    if blob != registered:
        raise ProtocolError(f'protocol {rel!r} was changed after it was registered at {commit[:12]} ({date}); a '
                            'changed protocol is a new protocol file')
    return dict(path=rel, commit=commit, date=date, blob=blob, head=_git(['rev-parse', 'HEAD'], top))


def check_code_committed(repo: str, paths: Mapping[str, str] | List[str] = ('stepsnet', 'configs')) -> None:
    """Refuse to train under a protocol from a checkout whose code or recipes differ from its commit: every run
    records that commit, and it must say what trained.

    Raises:
        ProtocolError: Uncommitted changes under ``paths``.
    """
    changed = _git(['status', '--porcelain', '--untracked-files=no', '--', *paths], repo)
    if changed:
        first = changed.splitlines()[0].strip()
        raise ProtocolError(f'the checkout {repo!r} has uncommitted changes ({first}, ...); a pre-registered run '
                            'trains committed code only (use a git worktree at the protocol\'s commit)')
