"""The ``stepsnet`` command: thin argument parsing over the library functions, and one error surface.

Each module in ``COMMANDS`` defines ``register(subparsers)``, which adds its subcommands and sets ``func`` on
each parser (and ``trains = True`` on commands that write a run folder); :func:`main` parses, calls
``args.func(args)`` and turns expected failures into one line on stderr and an exit code:

==== ===========================================================================================
code meaning
==== ===========================================================================================
0    done
2    a user error: a bad value or flag, a missing or wrong file, a run folder that cannot be used,
     no GPU where one was asked for (argparse's usage errors also exit with 2)
3    training stopped: the loss became NaN or infinite more often than ``--nan-tolerance`` allows
     (the last good checkpoint is kept)
130  interrupted (Ctrl-C); a training command prints how to continue the run
1    a bug: anything else ends with Python's traceback (``stepsnet --debug ...`` shows one for every error)
==== ===========================================================================================

The command modules import only argparse at the top: torch, timm and the rest load inside the function that runs
a command, so ``stepsnet --help``, ``stepsnet COMMAND --help`` and usage errors answer at once. The flags of a
training command are the fields of its task's config (:mod:`stepsnet.config`, which loads no torch either); they are
added only to the parser of the command being run (:func:`stepsnet.cli.common.add_config_flags`), and the config is
built, with its checks, before the task's module is imported. ``stepsnet train`` and ``stepsnet eval`` hand the
command line to the task's own command (:mod:`stepsnet.cli.dispatch`).
"""
import argparse
import importlib
import os
import shlex
import sys
from typing import List, Optional, Tuple

from stepsnet.utils.errors import TrainingError
from stepsnet.utils.tasks import TASKS

# the command modules: the general ones, each task's own (its row's ``cli``, once per module) after `train`/`eval`
COMMANDS = (
    'stepsnet.cli.models',
    'stepsnet.cli.data',
    'stepsnet.cli.dispatch',
    *dict.fromkeys(t.cli for t in TASKS.values()),
    'stepsnet.cli.compare',
    'stepsnet.cli.benchmark',
    'stepsnet.cli.analyze',
    'stepsnet.cli.weights',
)

EXIT_INTERNAL = 1
EXIT_USER_ERROR = 2
EXIT_STOPPED = 3
EXIT_INTERRUPTED = 130
# CheckpointError and WeightsError are ValueErrors
USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError,
               PermissionError)


def build_parser(command: Optional[str] = None) -> argparse.ArgumentParser:
    """The ``stepsnet`` parser; the config flags of ``command`` (e.g. ``'train-lm'``) are added, those of the other
    training commands only when one of them is run (they import its task)."""
    from stepsnet.cli.common import Parser, complete_config_flags
    # every subparser is made by ``add_subparsers`` with the class of its parent: one-line usage errors everywhere
    parser = Parser(
        prog='stepsnet',
        description='Step by Step Network (arXiv:2511.14329): models, training, evaluation and analyses.',
        epilog='Exit codes: 0 done, 1 internal error, 2 user error, 3 training stopped on a non-finite loss, '
               '130 interrupted.')
    parser.add_argument('--debug', action='store_true', help='show the Python traceback of every error')
    sub = parser.add_subparsers(dest='command', metavar='COMMAND')
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(name).register(sub)
    if command is not None:
        complete_config_flags(sub.choices[command])
    return parser


def _subcommands(parser: argparse.ArgumentParser) -> argparse._SubParsersAction:
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))


def _command(argv: List[str]) -> Tuple[int, Optional[str]]:
    """Position and word of the command in ``argv`` (the first word that is not an option), or (-1, None)."""
    for i, word in enumerate(argv):
        if not word.startswith('-'):
            return i, word
    return -1, None


def _resume_hint(argv: List[str]) -> str:
    words = [w for w in argv if w != '--debug']
    if '--resume' not in words and not any(w.startswith('--resume=') for w in words):
        words.append('--resume')
    return 'stepsnet ' + ' '.join(shlex.quote(w) for w in words)


def _one_line(e: BaseException) -> str:
    text = str(e) if not isinstance(e, OSError) or not e.filename else f'{e.strerror}: {e.filename!r}'
    return ' '.join(text.split())


def shadowing_package() -> Optional[str]:
    """Where ``import stepsnet`` found a package other than the one this command runs from, or None.

    A folder named ``stepsnet`` in the current directory (a clone's root, which holds no ``__init__.py``) or earlier on
    ``sys.path`` is what ``import stepsnet`` finds first: Python makes it a namespace package, and this command still
    runs because an editable install's finder supplies ``stepsnet.cli`` and the other modules by their full names.
    Code that relies on the package itself (``stepsnet.__version__``, the timm registration on ``import stepsnet``)
    then fails in ways that do not name the cause. With a regular (not editable) install, ``python -m stepsnet`` in
    that folder stops before any code of ours runs (``No module named stepsnet.__main__``), so this cannot say so.
    """
    package = sys.modules.get('stepsnet')
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    found = getattr(package, '__file__', None)
    if package is None or (found and os.path.dirname(os.path.abspath(found)) == here):
        return None
    return found or next(iter(getattr(package, '__path__', None) or []), '(unknown)')


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    shadow = shadowing_package()
    if shadow is not None:
        print(f'stepsnet: warning: `import stepsnet` finds {shadow}, not the stepsnet this command runs from '
              f'({os.path.dirname(os.path.dirname(os.path.abspath(__file__)))}): a folder named stepsnet in the '
              'current directory or on PYTHONPATH shadows it; run from another folder or rename that one',
              file=sys.stderr)
    debug = '--debug' in argv[:max(_command(argv)[0], 0)]
    try:
        return _main(argv)
    except KeyboardInterrupt:  # before the command started: while its modules were still loading
        if debug:
            raise
        word = _command(argv)[1]
        print(f'stepsnet{" " + word if word else ""}: interrupted', file=sys.stderr)
        return EXIT_INTERRUPTED


def _main(argv: List[str]) -> int:
    from stepsnet.cli import common, dispatch
    from stepsnet.utils.names import did_you_mean

    parser = build_parser()
    sub = _subcommands(parser)
    at, word = _command(argv)
    if word is not None and word not in sub.choices:
        print(f'stepsnet: error: unknown command {word!r}{did_you_mean(word, sub.choices, n=1)} (`stepsnet --help` '
              'lists the commands)', file=sys.stderr)
        return EXIT_USER_ERROR
    parse = argv
    if word is not None:
        try:
            alias = dispatch.resolve(word, argv[at + 1:])
        except USER_ERRORS as e:
            if '--debug' in argv[:at]:
                raise
            print(f'stepsnet {word}: error: {_one_line(e)}', file=sys.stderr)
            return EXIT_USER_ERROR
        if alias is not None:
            parse = argv[:at] + [alias] + argv[at + 1:]
        common.complete_config_flags(sub.choices[alias or word])
    args = parser.parse_args(parse)
    name = f'stepsnet {word}'
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        if args.debug:
            raise
        hint = f'; continue the run with: {_resume_hint(argv)}' if getattr(args, 'trains', False) else ''
        print(f'{name}: interrupted{hint}', file=sys.stderr)
        return EXIT_INTERRUPTED
    except FloatingPointError as e:
        if args.debug:
            raise
        print(f'{name}: stopped: {e}', file=sys.stderr)
        return EXIT_STOPPED
    except TrainingError as e:  # ours, not the user's: said so, with its cause
        if args.debug:
            raise
        print(f'{name}: internal error (not a problem with your input): {_one_line(e)}; the run folder keeps the '
              'last checkpoint; `stepsnet --debug ...` shows the traceback; please report it', file=sys.stderr)
        return EXIT_INTERNAL
    except USER_ERRORS as e:
        if args.debug:
            raise
        print(f'{name}: error: {_one_line(e)}', file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == '__main__':
    sys.exit(main())
