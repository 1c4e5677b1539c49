"""``stepsnet train`` and ``stepsnet eval``: one grammar for the four tasks.

``stepsnet train -c RECIPE [--FIELD VALUE ...]`` trains the task the recipe names in its ``task:`` field (``cls``,
``lm``, ``det``, ``seg``; a recipe that names none, or no recipe, is image classification).
``stepsnet eval --checkpoint FILE [...]`` evaluates a checkpoint with the task that wrote it. Both hand the whole
command line to the task's own command, which stays available under its name:

====  ====================  ===================
task  train                 eval
====  ====================  ===================
cls   ``train-cls``         ``validate``
lm    ``train-lm``          ``eval-lm``
det   ``train-det``         ``eval-det``
seg   ``train-seg``         ``eval-seg``
====  ====================  ===================

A recipe given to another task's training command is refused with the command it belongs to.
"""
import argparse
import os
from typing import List, Optional

from stepsnet.utils.config import RECIPE_TASKS, recipe_task
from stepsnet.utils.tasks import DEFAULT_TASK, TASKS, task_of_kind

__all__ = ['TRAIN_COMMANDS', 'EVAL_COMMANDS', 'resolve']

TRAIN_COMMANDS = {t.name: t.train_command for t in TASKS.values()}
EVAL_COMMANDS = {t.name: t.eval_command for t in TASKS.values()}


def _options(args: List[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument('-c', '--config')
    p.add_argument('--checkpoint')
    p.add_argument('-h', '--help', action='store_true')
    return p.parse_known_args(args)[0]


def _recipe_task(path: str) -> Optional[str]:
    try:
        return recipe_task(path)
    except FileNotFoundError:
        return None  # the task's own loader names the missing file


def _checkpoint_task(path: str) -> str:
    from stepsnet.utils.loading import checkpoint_kind
    kind = checkpoint_kind(path)
    task = task_of_kind(kind)
    if task is None:
        raise ValueError(f'checkpoint {path!r} has format {kind!r}; expected one of '
                         f'{sorted(t.kind for t in TASKS.values())}')
    return task


def resolve(command: str, args: List[str]) -> Optional[str]:
    """The command that runs ``stepsnet COMMAND ARGS``: the task's own command for ``train`` / ``eval`` (None for
    their ``--help`` without a recipe or checkpoint), ``None`` for every other command.

    Raises:
        ValueError: A recipe given to another task's training command, a recipe with an unknown task, or an
            ``eval`` of a file that is not a stepsnet checkpoint.
    """
    opts = _options(args)
    if command == 'train':
        if opts.help and not opts.config:
            return None
        return TRAIN_COMMANDS[(_recipe_task(opts.config) if opts.config else None) or DEFAULT_TASK]
    if command == 'eval':
        if opts.help and not opts.checkpoint:
            return None
        # a path that is not a file goes to the default task, whose loader says what is wrong with it
        task = _checkpoint_task(opts.checkpoint) if opts.checkpoint and os.path.isfile(opts.checkpoint) \
            else DEFAULT_TASK
        return EVAL_COMMANDS[task]
    task = next((t for t, c in TRAIN_COMMANDS.items() if c == command), None)
    if task is not None and opts.config:
        found = _recipe_task(opts.config)
        if found is not None and found != task:  # a recipe that names no task is the command's
            raise ValueError(
                f'{opts.config!r} is a recipe of task {found!r} ({RECIPE_TASKS[found]}); train it with '
                f'`stepsnet train -c {opts.config}` (or `stepsnet {TRAIN_COMMANDS[found]}`), not with '
                f'`stepsnet {command}`, which trains {RECIPE_TASKS[task]}')
    return None


def _no_run(args: argparse.Namespace) -> int:
    raise AssertionError('stepsnet.cli.main hands train / eval to the task\'s command')  # pragma: no cover


def register(sub: argparse._SubParsersAction) -> None:
    tasks = ', '.join(f'{t} ({d})' for t, d in RECIPE_TASKS.items())
    p = sub.add_parser(
        'train', help='train any task from a YAML recipe (the task is the recipe\'s `task:` field)',
        description=f'Train the task the recipe names in its `task:` field: {tasks}; a recipe that names none is '
                    'image classification. Every field of the task\'s config is also a flag that overrides the '
                    f'recipe: `stepsnet train -c RECIPE --help` lists them. The commands '
                    f'{", ".join(TRAIN_COMMANDS.values())} are the same for one task each. Launch with torchrun for '
                    'DDP.')
    p.add_argument('--config', '-c', help='YAML recipe (configs/*/*.yaml)')
    p.set_defaults(func=_no_run, trains=True)

    p = sub.add_parser(
        'eval', help=f'evaluate a checkpoint with the task that wrote it ({", ".join(EVAL_COMMANDS.values())})',
        description='Evaluate a training checkpoint with its task\'s evaluation: top-1 / top-5 (classification), '
                    'validation loss, perplexity and bits per byte (language model), COCO AP (detection), mIoU '
                    '(segmentation). `stepsnet eval --checkpoint FILE --help` lists the options of that task; '
                    f'{", ".join(EVAL_COMMANDS.values())} are the same for one task each.')
    p.add_argument('--checkpoint', help='last.pth / best.pth of a training run')
    p.set_defaults(func=_no_run)
