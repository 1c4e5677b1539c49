"""Task configs: a dataclass filled from a YAML recipe, then from overrides such as parsed command-line flags."""
import dataclasses
import os
from typing import Any, Mapping, Optional, Type, TypeVar

import yaml

__all__ = ['load_dataclass_config', 'CLEAR', 'RECIPE_TASKS', 'recipe_task']


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
RECIPE_TASKS = {'cls': 'image classification', 'lm': 'language modelling', 'det': 'object detection',
                'seg': 'semantic segmentation'}


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


def load_dataclass_config(
        cls: Type[C],
        path: Optional[str] = None,
        overrides: Optional[Mapping[str, Any]] = None,
) -> C:
    """Build ``cls`` from a YAML file whose keys are its fields, then apply the non-``None`` ``overrides``.

    An override of :data:`CLEAR` sets the field to None. A key that an earlier release used (``cls.RENAMED``,
    old name -> new name) is refused with the new name.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: Invalid YAML, a file that is not a mapping, or unknown keys (named, with the expected fields).
    """
    values: dict = {}
    if path:
        loaded = _read_yaml(path, f'{cls.__name__} fields')
        values.update({k: v for k, v in loaded.items() if k not in INFORMATIONAL_KEYS})
    values.update({k: (None if v is CLEAR else v) for k, v in (overrides or {}).items() if v is not None})
    where = f' in {path!r}' if path else ''
    renamed = getattr(cls, 'RENAMED', {})
    old = sorted(k for k in values if k in renamed)
    if old:
        hints = ', '.join(f'{k!r} is now {renamed[k]!r}' for k in old)
        raise ValueError(f'config keys {old}{where} were renamed: {hints}')
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f'unknown config keys {unknown}{where}; expected fields of {cls.__name__}: {sorted(known)}')
    return cls(**values)
