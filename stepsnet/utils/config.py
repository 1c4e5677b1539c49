"""Task configs: a dataclass filled from a YAML recipe, then from overrides such as parsed command-line flags.

Every value is checked against its field's type before the config is built (``lr: fast`` is one line naming the
field, the value and what is allowed); the config's ``__post_init__`` then checks ranges. A misspelt key is refused
with the closest field names, and a key of an earlier release (``cls.RENAMED``) is read as its new name with a
message naming it.
"""
import dataclasses
import difflib
import os
import re
import sys
import typing
from typing import Any, Dict, Mapping, Optional, Type, TypeVar

import yaml

from stepsnet.utils.tasks import TASKS

__all__ = ['load_dataclass_config', 'check_field_types', 'close_matches', 'CLEAR', 'RECIPE_TASKS', 'recipe_task']


class _Clear:
    """An override that sets an optional field to None (a plain None override means "not given")."""

    def __repr__(self) -> str:
        return 'CLEAR'


CLEAR = _Clear()

C = TypeVar('C')

# keys a recipe may carry for its readers only (e.g. the citation of where the recipe comes from); ``task`` names the
# task that trains the recipe (``stepsnet train -c RECIPE`` reads it), checked by :func:`recipe_task`
INFORMATIONAL_KEYS = ('source', 'task')
# a recipe's ``task:`` -> what it trains
RECIPE_TASKS = {t.name: t.title for t in TASKS.values()}


def _read_yaml(path: str, what: str) -> dict:
    if os.path.isdir(path):
        raise ValueError(f'config {path!r} is a folder; expected a YAML file of {what} (see configs/)')
    if not os.path.isfile(path):
        raise FileNotFoundError(f'config file {path!r} does not exist; expected a YAML file of {what} (see configs/)')
    with open(path, encoding='utf-8') as f:
        try:
            loaded = yaml.safe_load(f) or {}
        except yaml.YAMLError as e:
            raise ValueError(f'config file {path!r} is not valid YAML ({e})') from e
    if not isinstance(loaded, dict):
        raise ValueError(f'config file {path!r} must hold a mapping of {what}, got {type(loaded).__name__}')
    return loaded


def recipe_task(path: str) -> Optional[str]:
    """The ``task:`` of a recipe (a key of :data:`RECIPE_TASKS`), or None when the recipe does not say.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: Not a YAML mapping, or a task that is not one of :data:`RECIPE_TASKS`.
    """
    task = _read_yaml(path, 'recipe fields').get('task')
    if task is not None and task not in RECIPE_TASKS:
        raise ValueError(f'config file {path!r} has task {task!r}; expected one of {sorted(RECIPE_TASKS)}')
    return task


def close_matches(word: str, choices, n: int = 3) -> str:
    """`` (did you mean 'a' or 'b'?)`` for the choices close to ``word``, or ``''``."""
    found = difflib.get_close_matches(word, list(choices), n=n, cutoff=0.6)
    return f" (did you mean {' or '.join(repr(c) for c in found)}?)" if found else ''


_PLURAL = {bool: 'true / false values', int: 'whole numbers', float: 'numbers', str: 'strings'}


def _what(tp: Any) -> str:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if type(None) in typing.get_args(tp) and typing.get_origin(tp) is typing.Union:
        return _what(args[0] if len(args) == 1 else Any) + ' (or null)'
    origin = typing.get_origin(tp)
    if origin in (list, tuple):
        elem = [a for a in args if a is not Ellipsis]
        return 'a list of ' + _PLURAL.get(elem[0] if elem else Any, 'values')
    if origin is dict:
        return 'a mapping of keys to values'
    return {bool: 'true or false', int: 'a whole number', float: 'a number', str: 'a string'}.get(tp, 'a value')


def _coerce(tp: Any, value: Any) -> Any:
    """``value`` as type ``tp``, or raise ``TypeError``."""
    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    if origin is typing.Union:
        if value is None and type(None) in typing.get_args(tp):
            return None
        for arg in (a for a in typing.get_args(tp) if a is not type(None)):
            try:
                return _coerce(arg, value)
            except TypeError:
                pass
        raise TypeError
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise TypeError
        elem = next((a for a in typing.get_args(tp) if a is not Ellipsis), Any)
        return type(value)(_coerce(elem, v) for v in value)
    if origin is dict:
        if not isinstance(value, dict):
            raise TypeError
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise TypeError
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or float(value) != int(value):
            raise TypeError
        return int(value)
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                raise TypeError from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise TypeError
        return value
    return value


def check_field_types(cls: Type[Any], values: Dict[str, Any], where: str = '') -> Dict[str, Any]:
    """``values`` converted to the types of ``cls``'s fields (``3.0`` for an int field is 3, ``'1e-3'`` a float).

    Raises:
        ValueError: A value of the wrong type, one line naming the field, the value and what is allowed.
    """
    hints = typing.get_type_hints(cls)
    out = dict(values)
    for name, value in values.items():
        tp = hints.get(name, Any)
        if name == 'resume' and isinstance(value, bool):  # ``resume: true`` in a recipe
            continue
        try:
            out[name] = _coerce(tp, value)
        except (TypeError, ValueError, OverflowError):
            raise ValueError(f'{name}{where}: expected {_what(tp)}, got {value!r}') from None
    return out


def _new_names(cls: Type[Any], values: Dict[str, Any], known, where: str) -> Dict[str, Any]:
    """Keys of an earlier release read as their new names (with a note); unknown keys refused with close matches."""
    values = dict(values)
    renamed = getattr(cls, 'RENAMED', {})
    defaults = {f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
                for f in dataclasses.fields(cls)
                if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING}
    given = set(values)
    for old in sorted(k for k in values if k in renamed):
        new = renamed[old]
        item = re.fullmatch(r'(\w+)\[(\d+)\]', new)  # one element of a list field: beta2 -> opt_betas[1]
        name = item.group(1) if item else new
        if name not in known:
            raise ValueError(f'config key {old!r}{where} was renamed: it is now {new}')
        if name in given:
            raise ValueError(f'config keys {old!r} and {name!r}{where} name the same field; keep {name!r}')
        print(f'note: config key {old!r}{where} is now {new!r}; read as {new!r}', file=sys.stderr, flush=True)
        if item:
            seq = list(values.get(name, defaults.get(name)) or [])
            seq[int(item.group(2))] = values.pop(old)
            values[name] = seq
        else:
            values[new] = values.pop(old)
    unknown = sorted(set(values) - known)
    if unknown:
        hints = ''.join(close_matches(k, known) for k in unknown)
        raise ValueError(f'unknown config keys {unknown}{where}{hints}; expected fields of {cls.__name__} (see '
                         'configs/ and --help)')
    return values


def load_dataclass_config(
        cls: Type[C],
        path: Optional[str] = None,
        overrides: Optional[Mapping[str, Any]] = None,
) -> C:
    """Build ``cls`` from a YAML file whose keys are its fields, then apply the non-``None`` ``overrides``.

    An override of :data:`CLEAR` sets the field to None. A key that an earlier release used (``cls.RENAMED``,
    old name -> new name) is read as the new name, with a message on stderr; one whose meaning changed (its new
    name is not a single field, e.g. ``'amp and amp_dtype'``) is refused with the new names.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: Invalid YAML, a file that is not a mapping, unknown keys (named, with close matches), a key
            given under both its old and new name, or a value of the wrong type or range.
    """
    recipe: dict = {}
    if path:
        loaded = _read_yaml(path, f'{cls.__name__} fields')
        recipe = {k: v for k, v in loaded.items() if k not in INFORMATIONAL_KEYS}
    given = {k: (None if v is CLEAR else v) for k, v in (overrides or {}).items() if v is not None}
    known = {f.name for f in dataclasses.fields(cls)}
    recipe = check_field_types(cls, _new_names(cls, recipe, known, f' in {path!r}' if path else ''),
                               f' in {path!r}' if path else '')
    given = check_field_types(cls, _new_names(cls, given, known, ''))
    values = {**recipe, **given}
    where = f' in {path!r}' if path else ''
    try:
        return cls(**values)
    except TypeError as e:  # a check of __post_init__ meeting a value it cannot compare: still one line
        raise ValueError(f'{cls.__name__}{where}: {e}') from None
