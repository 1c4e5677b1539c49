"""The one flag convention of the ``stepsnet`` command.

Every training command takes ``--config FILE`` (a YAML recipe) and one flag per field of its config dataclass;
a flag overrides the recipe. The conventions, the same for every command:

* ``--name VALUE`` for numbers and strings (``none`` clears an optional field);
* ``--flag`` / ``--no-flag`` for booleans;
* lists as separate values or with commas: ``--lr-steps 8 11`` or ``--lr-steps 8,11``;
* mappings as ``KEY=VALUE`` pairs (values are Python literals): ``--model-kwargs depth=8 num_steps=3``;
* ``--resume`` alone continues the run in the output folder; ``--resume PATH`` continues that checkpoint.
"""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import importlib
import os
import re
import sys
import typing
from typing import Any, Dict, Iterable, List, Optional, Sequence, Type, Union

from stepsnet.utils.config import CLEAR

__all__ = ['Parser', 'add_config_flags', 'config_from_flags', 'config_overrides', 'ParseKwargs', 'positive_int',
           'positive_float', 'non_negative_int', 'non_negative_float', 'integer', 'probability', 'fraction',
           'int_list', 'closest_flag']

# Flags of other tools (timm, Hugging Face, PyTorch examples) -> ours, tried in order: a misspelt flag is answered
# with the first of ours that the command has (``--learning-rate`` -> ``--lr``), before any look-alike by spelling
# (which would offer ``--drop-rate``). Keys are written with dashes; ``--learning_rate`` is looked up as
# ``--learning-rate``.
FLAG_SYNONYMS: Dict[str, Sequence[str]] = {
    '--learning-rate': ('--lr',),
    '--lr-rate': ('--lr',),
    '--bs': ('--batch-size',),
    '--batch': ('--batch-size',),
    '--batchsize': ('--batch-size',),
    '--train-batch-size': ('--batch-size',),
    '--per-device-train-batch-size': ('--batch-size',),
    '--output': ('--out-dir', '--out'),
    '--output-dir': ('--out-dir', '--out'),
    '--outdir': ('--out-dir', '--out'),
    '--save-dir': ('--out-dir', '--out'),
    '--out-dir': ('--out',),
    '--num-epochs': ('--epochs',),
    '--n-epochs': ('--epochs',),
    '--num-train-epochs': ('--epochs',),
    '--num-workers': ('--workers',),
    '--nworkers': ('--workers',),
    '--dataloader-num-workers': ('--workers',),
    '--wd': ('--weight-decay',),
    '--weightdecay': ('--weight-decay',),
    '--optimizer': ('--opt',),
    '--optim': ('--opt',),
    '--grad-clip': ('--clip-grad',),
    '--max-grad-norm': ('--clip-grad',),
    '--clip-grad-norm': ('--clip-grad',),
    '--label-smoothing': ('--smoothing',),
    '--max-steps': ('--max-iters',),
    '--num-steps': ('--max-iters',),
    '--total-steps': ('--max-iters',),
    '--max-iter': ('--max-iters',),
    '--warmup-steps': ('--warmup-iters', '--warmup-epochs'),
    '--gradient-accumulation-steps': ('--grad-accum',),
    '--accum-steps': ('--grad-accum',),
    '--accumulation-steps': ('--grad-accum',),
    '--image-size': ('--img-size',),
    '--input-size': ('--img-size',),
    '--context-length': ('--block-size', '--seq-len'),
    '--seq-length': ('--block-size', '--seq-len'),
    '--random-seed': ('--seed',),
    '--model-name': ('--model',),
    '--cfg': ('--config',),
    '--config-file': ('--config',),
    '--resume-from': ('--resume',),
    '--resume-from-checkpoint': ('--resume',),
    '--ckpt': ('--checkpoint',),
}
_FLAG = re.compile(r'--?[A-Za-z]')


def closest_flag(word: str, options: Iterable[str]) -> Optional[str]:
    """The one real flag of ``options`` that the unknown ``word`` most likely meant, or None.

    Tried in order: the same flag written with dashes (``--batch_size``), a flag of another tool
    (:data:`FLAG_SYNONYMS`), then the closest spelling (difflib's ratio, at least 0.7: a looser match offers
    flags that only share dashes and a few letters).
    """
    options = list(options)
    flag = word.split('=', 1)[0]
    dashed = '--' + flag.lstrip('-').replace('_', '-').lower()
    if dashed != flag and dashed in options:
        return dashed
    found = next((o for o in FLAG_SYNONYMS.get(dashed, ()) if o in options), None)
    if found is not None:
        return found
    close = difflib.get_close_matches(flag, [o for o in options if o.startswith('--')], n=1, cutoff=0.7)
    return close[0] if close else None


class Parser(argparse.ArgumentParser):
    """The ``stepsnet`` parser (and, through ``add_subparsers``, every subcommand's): a usage error is one line.

    argparse prints the whole usage (11 to 50 lines for a training command) before the one line that says what is
    wrong; here the error is that line, with where to find the flags. A flag the command does not have is answered
    with the closest real one (:func:`closest_flag`), and a flag of an earlier release whose meaning changed
    (``refused``: flag -> what replaced it) with its new name.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.refused: Dict[str, str] = {}
        self._words: Sequence[str] = ()

    def error(self, message: str):
        if message.startswith('the following arguments are required'):
            # ``export-weights X --output Y``: the misspelt flag is the mistake, not the flag it left out
            unknown = self._unknown_flags(self._words)
            message = self._unknown_message(unknown[0]) if unknown else message
        has_commands = any(isinstance(a, argparse._SubParsersAction) for a in self._actions)
        what = 'commands' if self.prog == 'stepsnet' else 'subcommands' if has_commands else 'flags'
        self.exit(2, f'{self.prog}: error: {message} (`{self.prog} --help` lists the {what})\n')

    def _options(self):
        return [o for a in self._actions for o in a.option_strings]

    def _unknown_flags(self, words: Sequence[str]):
        """The words of ``words`` that look like flags and are none of this parser's (nor an abbreviation of one)."""
        options = self._options()
        words = list(words)
        words = words[:words.index('--')] if '--' in words else words
        flags = [w.split('=', 1)[0] for w in words if _FLAG.match(w)]
        return [f for f in flags if not any(o.startswith(f) for o in options)]

    def _unknown_message(self, flag: str) -> str:
        if flag in self.refused:
            new, _, why = self.refused[flag].partition(' ')
            return f'argument {flag} was renamed: it is now --{new.replace("_", "-")} {why}'.rstrip()
        found = closest_flag(flag, self._options())
        return f'unrecognized argument {flag}' + (f'; did you mean {found}?' if found else '')

    def parse_known_args(self, args=None, namespace=None):
        self._words = list(sys.argv[1:] if args is None else args)
        namespace, extras = super().parse_known_args(args, namespace)
        flags = [a.split('=', 1)[0] for a in extras if _FLAG.match(a)]
        if flags:
            self.error(self._unknown_message(flags[0]))
        return namespace, extras


class ParseKwargs(argparse.Action):
    """timm's ``KEY=VALUE ...`` flag (values parsed as Python literals, else kept as strings), with a usage error
    for an item without ``=`` and repeated flags merged. timm is imported only when the flag is given."""

    def __call__(self, parser, namespace, values, option_string=None):
        from timm.utils import ParseKwargs as TimmParseKwargs
        bad = [v for v in values if v and '=' not in v]
        if bad:
            raise argparse.ArgumentError(self, f'expected KEY=VALUE pairs, got {bad[0]!r}')
        before = dict(getattr(namespace, self.dest, None) or {})
        TimmParseKwargs.__call__(self, parser, namespace, values, option_string)
        setattr(namespace, self.dest, {**before, **getattr(namespace, self.dest)})


class _ExtendList(argparse.Action):
    """Collects list values given separately or with commas (``8 11`` or ``8,11``)."""

    def __call__(self, parser, namespace, values, option_string=None):
        if any(group is CLEAR for group in values):
            setattr(namespace, self.dest, CLEAR)
            return
        setattr(namespace, self.dest, [v for group in values for v in group])


def _element(tp: Any, optional: bool = False):
    def convert(text: str):
        if optional and text.strip().lower() in ('none', 'null'):
            return CLEAR
        parts = [p for p in text.split(',') if p.strip()]
        try:
            return [tp(p) for p in parts]
        except ValueError as e:
            raise argparse.ArgumentTypeError(f'expected {tp.__name__} values, got {text!r}') from e
    return convert


_KIND = {int: 'a whole number', float: 'a number'}


def _scalar(tp: Any, optional: bool = False):
    """The converter of a config field's flag: ``tp(text)`` with an error naming what was expected (``none`` clears
    an optional field). Ranges are the config's to check (its ``__post_init__``), once for flags and recipes."""
    def convert(text: str):
        if optional and text.strip().lower() in ('none', 'null'):
            return CLEAR
        try:
            return tp(text)
        except ValueError as e:
            kind = _KIND.get(tp, f'a {tp.__name__}')
            raise argparse.ArgumentTypeError(f'expected {kind}{" (or none)" if optional else ""}, got {text!r}') \
                from e
    convert.__name__ = tp.__name__
    return convert


def _number(text: str, convert, ok, kind: str, expected: str):
    """``convert(text)`` when it parses and ``ok`` holds, else an argparse error naming what was expected."""
    try:
        value = convert(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f'expected {kind}, got {text!r}') from e
    if not ok(value):
        raise argparse.ArgumentTypeError(f'expected {expected}, got {text}')
    return value


def positive_int(text: str) -> int:
    """An integer >= 1 (for flags outside a config dataclass)."""
    return _number(text, int, lambda v: v >= 1, 'a whole number', 'a whole number >= 1')


def positive_float(text: str) -> float:
    """A finite number > 0 (for flags outside a config dataclass)."""
    return _number(text, float, lambda v: 0 < v < float('inf'), 'a number', 'a finite number > 0')


def non_negative_int(text: str) -> int:
    """An integer >= 0 (counts where 0 means none: loader workers, warm-up iterations)."""
    return _number(text, int, lambda v: v >= 0, 'a whole number', 'a whole number >= 0')


def non_negative_float(text: str) -> float:
    """A finite number >= 0 (e.g. a sampling temperature, where 0 means greedy)."""
    return _number(text, float, lambda v: 0 <= v < float('inf'), 'a number', 'a finite number >= 0')


def integer(text: str) -> int:
    """Any integer (seeds: negative seeds are seeds too)."""
    return _number(text, int, lambda v: True, 'a whole number', 'a whole number')


def probability(text: str) -> float:
    """A number strictly between 0 and 1."""
    return _number(text, float, lambda v: 0 < v < 1, 'a number between 0 and 1',
                   'a number strictly between 0 and 1')


def fraction(text: str) -> float:
    """A number in (0, 1]: a share of something that may be all of it (a center crop)."""
    return _number(text, float, lambda v: 0 < v <= 1, 'a number', 'a number > 0 and <= 1')


def int_list(text: str) -> list:
    """``512,512`` or ``512x512`` -> ``[512, 512]`` (whole numbers >= 1)."""
    values = _element(int)(text.replace('x', ','))
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f'expected whole numbers >= 1, got {text!r}')
    return values


def add_config_flags(
        parser: argparse.ArgumentParser,
        cls: Union[Type[Any], str],
        skip: Iterable[str] = (),
        help: Optional[Dict[str, str]] = None,
) -> None:
    """One flag per field of the dataclass ``cls``; defaults are None so only given flags override a recipe.

    ``cls`` may be named as ``'module:Class'`` (a module of :mod:`stepsnet.config`, which loads no torch): the flags
    are then added by :func:`complete_config_flags` to the parser of the command being run only.
    """
    if isinstance(cls, str):
        parser.set_defaults(_config_flags=(cls, tuple(skip), help))
        return
    hints = typing.get_type_hints(cls)
    help = help or {}
    group = parser.add_argument_group(f'{cls.__name__} fields (override the --config recipe)')
    # a field renamed by the task's own config keeps its earlier flag as a second name, and one whose meaning changed
    # (its new name is not a field) is refused with the new name (the shared fields' earlier names are recipe keys
    # only: ``--output`` would make ``--out`` an ambiguous abbreviation of ``--out-dir``)
    inherited = getattr(cls.__mro__[1], 'RENAMED', {})
    fields = {f.name for f in dataclasses.fields(cls)}
    aliases: Dict[str, list] = {}
    refused: Dict[str, str] = {}
    for old, new in getattr(cls, 'RENAMED', {}).items():
        if old in inherited:
            continue
        item = re.fullmatch(r'(\w+)\[(\d+)\]', new)  # one value of a list field: beta2 -> opt_betas[1]
        if new in fields:
            aliases.setdefault(new, []).append('--' + old.replace('_', '-'))
        elif item:
            refused['--' + old.replace('_', '-')] = f'{item.group(1)} (its value {int(item.group(2)) + 1})'
        else:
            refused['--' + old.replace('_', '-')] = new
    if isinstance(parser, Parser):  # a flag of ``refused`` says what replaced it
        parser.refused.update(refused)
    for f in dataclasses.fields(cls):
        if f.name in skip or f.name in getattr(cls, 'NOT_FLAGS', ()):
            continue
        flag = '--' + f.name.replace('_', '-')
        names = [flag, *aliases.get(f.name, [])]
        tp = hints[f.name]
        optional = type(None) in typing.get_args(tp)
        if optional:
            tp = next(a for a in typing.get_args(tp) if a is not type(None))
        origin = typing.get_origin(tp)
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        text = help.get(f.name, '')
        text = (text + ' ' if text else '') + f'(default {default!r})'
        if f.name == 'dry_run':
            group.add_argument(*names, type=positive_int, nargs='?', const=2, default=None, metavar='N',
                               help='build everything the recipe asks for, train N steps (default 2) and evaluate '
                                    'one batch; write nothing into the run folder; print time per step, peak memory '
                                    'and the projected time of the whole recipe')
        elif f.name == 'resume':
            group.add_argument(*names, nargs='?', const='last', default=None, metavar='PATH',
                               help='continue the run in the output folder; or continue the checkpoint PATH')
        elif tp is bool:
            group.add_argument(*names, action=argparse.BooleanOptionalAction, default=None, help=text)
        elif origin in (list, tuple, typing.List, typing.Tuple):
            args = [a for a in typing.get_args(tp) if a is not Ellipsis]
            elem = args[0] if args else float
            group.add_argument(*names, type=_element(elem, optional), nargs='+', action=_ExtendList, default=None,
                               metavar=elem.__name__.upper(), help=text)
        elif origin in (dict, typing.Dict):
            group.add_argument(*names, nargs='*', action=ParseKwargs, default=None, metavar='KEY=VALUE', help=text)
        else:
            conv = _scalar(tp, optional) if tp in (int, float) or optional else tp
            group.add_argument(*names, type=conv, default=None, metavar=f.name.upper(), help=text)


def complete_config_flags(parser: argparse.ArgumentParser) -> None:
    """Add the flags that :func:`add_config_flags` deferred on ``parser`` (once)."""
    deferred = parser.get_default('_config_flags')
    if deferred is None:
        return
    spec, skip, help = deferred
    module, name = spec.split(':')
    parser.set_defaults(_config_flags=None)
    add_config_flags(parser, getattr(importlib.import_module(module), name), skip, help)


def config_overrides(args: argparse.Namespace, cls: Type[Any]) -> Dict[str, Any]:
    """The fields of ``cls`` given on the command line (and merged mappings)."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
            if getattr(args, f.name, None) is not None}


def merge_mapping(base: Optional[Dict[str, Any]], extra: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    """A recipe's mapping (e.g. ``model_kwargs``) updated by the flag's pairs."""
    return None if extra is None else {**(base or {}), **extra}


def config_from_flags(args: argparse.Namespace, spec: str) -> Any:
    """The config of a training command: its recipe (``--config``) with the given flags on top.

    ``spec`` names the config class as ``'module:Class'`` (as :func:`add_config_flags` takes it), a module of
    :mod:`stepsnet.config` whose ``load_config`` reads the recipe: the config is built, and checked, before the task's
    module (and torch) is imported, so a bad value is refused at once.
    """
    module, name = spec.split(':')
    found = importlib.import_module(module)
    return load_with_flags(found.load_config, args.config, args, getattr(found, name))


def load_with_flags(load_config, path: Optional[str], args: argparse.Namespace, cls: Type[Any],
                    mappings: Sequence[str] = ('model_kwargs', 'detector_kwargs')):
    """``load_config(path, **flags)``, where mapping flags add to the recipe's mapping instead of replacing it; the
    config's ``check_schedule`` (a warm-up as long as the run) runs on the result."""
    overrides = config_overrides(args, cls)
    names = [m for m in mappings if m in overrides]
    base = load_config(path) if path and (names or overrides.get('dry_run')) else None
    for m in names:
        overrides[m] = merge_mapping(getattr(base, m, None), overrides[m])
    cfg = load_config(path, **overrides)
    if hasattr(cfg, 'check_schedule') and os.environ.get('RANK', '0') == '0':
        for warning in cfg.check_schedule():  # the run asked for: said before anything loads
            print(f'warning: {warning}', file=sys.stderr, flush=True)
    if base is not None and cfg.dry_run:
        if os.environ.get('RANK', '0') == '0':
            print(f'dry run of {path}: {recipe_changes(base, cfg)}', flush=True)
        cfg.dry_run_recipe = {name: getattr(base, name) for name in changed_fields(base, cfg)}
    return cfg


def changed_fields(recipe: Any, cfg: Any) -> List[str]:
    """The fields whose values ``cfg`` changes of ``recipe`` (the dry-run switches left out)."""
    return [f.name for f in dataclasses.fields(cfg)
            if f.name not in cfg.DRY_RUN_FIELDS and getattr(recipe, f.name) != getattr(cfg, f.name)]


def recipe_changes(recipe: Any, cfg: Any) -> str:
    """What ``cfg`` changes of ``recipe`` (the flags given with it), as one phrase for a dry run's printout."""
    changed = [f'{n} {getattr(recipe, n)!r} -> {getattr(cfg, n)!r}' for n in changed_fields(recipe, cfg)]
    return 'changed from the recipe: ' + ', '.join(changed) if changed else 'the recipe as written'
