"""The ``stepsnet`` command: thin argument parsing over the library functions.

Each submodule listed in ``COMMANDS`` defines ``register(subparsers)``, which adds its subcommands and sets
``func`` on each parser; ``main`` parses and calls ``args.func(args)``.
"""
import argparse
import importlib
import sys
from typing import List, Optional

COMMANDS = (
    'stepsnet.cli.models',
    'stepsnet.cli.lm',
    'stepsnet.cli.cls',
    'stepsnet.cli.analyze',
    'stepsnet.cli.dense',
    'stepsnet.cli.weights',
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='stepsnet',
        description='Step by Step Network (arXiv:2511.14329): models, training, evaluation and analyses.',
    )
    sub = parser.add_subparsers(dest='command', metavar='COMMAND')
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        rc = args.func(args)
    except (ValueError, FileNotFoundError) as e:
        print(f'stepsnet {args.command}: error: {e}', file=sys.stderr)
        return 2
    return int(rc or 0)


if __name__ == '__main__':
    sys.exit(main())
