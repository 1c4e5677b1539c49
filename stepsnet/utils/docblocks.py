"""Generated blocks inside hand-written documents: the one mechanism for every table the docs carry.

A generated block sits between two HTML comments, ``<!-- NAME:begin -->`` and ``<!-- NAME:end -->`` (e.g.
``models-table``, ``twin-coverage``, ``results:summary``); the prose around it is written by hand and never touched.
The scripts that regenerate a block (``scripts/update_*.py``, ``scripts/render_results.py``,
``python -m stepsnet.hf.coverage``) and the tests that check a block is current all go through
:func:`replace_block`, so "current" means the same thing everywhere.
"""
import pathlib
from typing import Tuple, Union

__all__ = ['markers', 'replace_block', 'write_block']


def markers(name: str) -> Tuple[str, str]:
    """The begin and end comments of the block ``name``."""
    return f'<!-- {name}:begin -->', f'<!-- {name}:end -->'


def replace_block(text: str, body: str, begin: str, end: str) -> str:
    """``text`` with what lies between ``begin`` and ``end`` replaced by ``body`` (which should end with a newline).

    Raises ``ValueError`` when the markers are missing or appear more than once: a document must say where its block
    goes, once."""
    for marker in (begin, end):
        if text.count(marker) != 1:
            found = 'no' if marker not in text else f'{text.count(marker)}x'
            raise ValueError(f'the text has {found} {marker} marker (exactly one {begin} ... {end} pair is needed)')
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    return f'{head}{begin}\n{body}{end}{tail}'


def write_block(path: Union[str, pathlib.Path], body: str, begin: str, end: str) -> bool:
    """Put ``body`` between the markers of the file at ``path``, through a temporary file and a rename; prints
    whether it changed and returns that."""
    path = pathlib.Path(path)
    text = path.read_text(encoding='utf-8')
    new = replace_block(text, body, begin, end)
    if new != text:
        tmp = path.with_name(path.name + '.tmp')
        tmp.write_text(new, encoding='utf-8')
        tmp.replace(path)
    print(f'{path}: {begin[5:-4].rsplit(":", 1)[0]} {"updated" if new != text else "unchanged"}')
    return new != text
