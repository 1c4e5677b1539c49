"""Writing generated data sets safely: never over a user's files by accident, never half-written.

A generator lists the files it will write (relative to its output folder) and calls :func:`refuse_existing`
before doing any work; it then writes everything into the temporary folder of :func:`staged_output`, which moves
the files into place only once all of them are written (a single rename when the output folder is new). When
generation fails, the temporary folder is removed and the output folder is as it was.
"""
import contextlib
import os
import secrets
import shutil
from typing import Iterable, Iterator

__all__ = ['refuse_existing', 'staged_output']


def refuse_existing(out: str, files: Iterable[str], force: bool, what: str) -> None:
    """Raise ``FileExistsError`` when ``out`` already holds one of ``files``, unless ``force``.

    Args:
        out: Output folder.
        files: Paths, relative to ``out``, that the generator writes.
        force: Overwrite such files instead.
        what: The generator's output, for the message (e.g. ``'a COCO-layout data set'``).
    """
    if os.path.exists(out) and not os.path.isdir(out):
        raise FileExistsError(f'output {out!r} exists and is not a folder; expected a folder or a new path for {what}')
    if force or not os.path.isdir(out):
        return
    existing = [f for f in files if os.path.lexists(os.path.join(out, f))]
    if existing:
        more = f' (and {len(existing) - 1} more of its files)' if len(existing) > 1 else ''
        raise FileExistsError(
            f'{os.path.join(out, existing[0])!r} already exists{more}; refusing to overwrite it with {what}. '
            'Choose another output folder, or pass force=True (--force) to overwrite')


@contextlib.contextmanager
def staged_output(out: str) -> Iterator[str]:
    """A temporary folder beside ``out`` to write into; its files replace those of ``out`` on success.

    Files already in ``out`` that the generator did not write are left alone.
    """
    out = os.path.abspath(out)
    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    # os.mkdir (unlike tempfile.mkdtemp) keeps the user's umask, so a renamed stage has ordinary permissions
    stage = os.path.join(parent, f'.{os.path.basename(out)}.{secrets.token_hex(4)}.tmp')
    os.mkdir(stage)
    try:
        yield stage
        if not os.path.exists(out):
            os.replace(stage, out)
            return
        for dirpath, _, filenames in os.walk(stage):
            target = os.path.join(out, os.path.relpath(dirpath, stage))
            os.makedirs(target, exist_ok=True)
            for name in filenames:
                os.replace(os.path.join(dirpath, name), os.path.join(target, name))
    finally:
        shutil.rmtree(stage, ignore_errors=True)
