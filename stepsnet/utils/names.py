"""Names the library and the ``stepsnet`` command share, importable without torch (the command offers them as
choices before it loads anything), and close matches for a misspelt name."""
import difflib
from typing import Iterable, Optional

__all__ = ['PAIRINGS', 'DETECTOR_ARCHS', 'SEG_EVAL_MODES', 'did_you_mean', 'plural']

# How a Steps trunk is paired with a residual trunk of L blocks in the depth studies
PAIRINGS = ('compute', 'blocks')
# The detectors of stepsnet.models.factory.create_detector
DETECTOR_ARCHS = ('mask_rcnn', 'faster_rcnn', 'retinanet')
# Segmentation inference: the whole image at once, or a sliding window
SEG_EVAL_MODES = ('whole', 'slide')


def did_you_mean(name: str, choices: Iterable[str], n: int = 3) -> str:
    """``"; did you mean 'x' or 'y'?"`` for the choices closest to ``name`` (by difflib's ratio), else ``''``."""
    close = difflib.get_close_matches(name, list(choices), n=n, cutoff=0.6)
    if not close:
        return ''
    return '; did you mean ' + ' or '.join(repr(c) for c in close) + '?'


def plural(count: float, word: str, many: Optional[str] = None) -> str:
    """``'1 epoch'``, ``'2 epochs'``, ``'1.5 epochs'``: a count with its noun in the right number (``many`` for a
    plural that is not ``word + 's'``)."""
    text = str(count) if isinstance(count, int) else f'{count:g}'
    return f'{text} {word if count == 1 else (many or word + "s")}'
