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
"""
import argparse
import importlib
import shlex
import sys
from typing import List, Optional

from stepsnet.utils.checkpoint import CheckpointError

COMMANDS = (
    'stepsnet.cli.models',
    'stepsnet.cli.data',
    'stepsnet.cli.lm',
    'stepsnet.cli.cls',
    'stepsnet.cli.dense',
    'stepsnet.cli.compare',
    'stepsnet.cli.benchmark',
    'stepsnet.cli.analyze',
    'stepsnet.cli.weights',
)

EXIT_USER_ERROR = 2
EXIT_STOPPED = 3
EXIT_INTERRUPTED = 130
USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError,
               PermissionError, CheckpointError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='stepsnet',
        description='Step by Step Network (arXiv:2511.14329): models, training, evaluation and analyses.',
        epilog='Exit codes: 0 done, 2 user error, 3 training stopped on a non-finite loss, 130 interrupted.')
    parser.add_argument('--debug', action='store_true', help='show the Python traceback of every error')
    sub = parser.add_subparsers(dest='command', metavar='COMMAND')
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(name).register(sub)
    return parser


def _resume_hint(argv: List[str]) -> str:
    words = [w for w in argv if w != '--debug']
    if '--resume' not in words and not any(w.startswith('--resume=') for w in words):
        words.append('--resume')
    return 'stepsnet ' + ' '.join(shlex.quote(w) for w in words)


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    name = f'stepsnet {args.command}'
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
    except USER_ERRORS as e:
        if args.debug:
            raise
        text = str(e) if not isinstance(e, OSError) or not e.filename else f'{e.strerror}: {e.filename!r}'
        print(f'{name}: error: {" ".join(text.split())}', file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == '__main__':
    sys.exit(main())
