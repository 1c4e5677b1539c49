"""Which generated block of which document each table is, and rendering, checking or writing them.

A block ``NAME`` sits between ``<!-- results:NAME:begin -->`` and ``<!-- results:NAME:end -->`` in its document
(:mod:`stepsnet.utils.docblocks`); :data:`BLOCKS` names its document (relative to the repository root) and the
function that renders it from the repository root.
"""
from __future__ import annotations

import pathlib
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

from stepsnet.compare.results_docs.analyses import (
    render_depth_benchmark,
    render_drop_step,
    render_mask,
    render_shortcut_init,
    render_shortcut_trained,
)
from stepsnet.compare.results_docs.cells import analyses_dir, check_root
from stepsnet.compare.results_docs.comparisons import render_comparison, render_mnist1d
from stepsnet.compare.results_docs.dry_runs import render_dry_runs
from stepsnet.compare.results_docs.lm import render_llama_compare, render_lm_sweep
from stepsnet.compare.results_docs.summary import render_summary
from stepsnet.utils import docblocks

__all__ = ['Block', 'BLOCKS', 'markers', 'render_text', 'check_names', 'render_block', 'stale_blocks',
           'write_blocks']

PathLike = Union[str, pathlib.Path]


class Block(NamedTuple):
    """A generated block: the document it sits in (relative to the repository root) and what renders it."""
    doc: str
    render: Callable[[pathlib.Path], str]


def _analysis_comparison(folder: str) -> Callable[[pathlib.Path], str]:
    """The table of the comparison recorded in ``docs/figures/analyses/<folder>/results.json``."""
    def render(root: pathlib.Path) -> str:
        return render_comparison(analyses_dir(root) / folder / 'results.json')
    render.__doc__ = f'The comparison of docs/figures/analyses/{folder}/results.json (:func:`render_comparison`).'
    return render


BLOCKS: Dict[str, Block] = {
    'summary': Block('docs/results.md', render_summary),
    'pilot-8seeds': Block('docs/analyses.md', _analysis_comparison('pilot_8seeds')),
    'pilot': Block('docs/analyses.md', _analysis_comparison('pilot')),
    'main-job': Block('docs/mnist1d.md', _analysis_comparison('main_job')),
    'depth-quick': Block('docs/analyses.md', _analysis_comparison('depth_quick')),
    'shortcut-init': Block('docs/analyses.md', render_shortcut_init),
    'mask': Block('docs/analyses.md', render_mask),
    'drop-step': Block('docs/analyses.md', render_drop_step),
    'shortcut-trained': Block('docs/analyses.md', render_shortcut_trained),
    'depth-benchmark': Block('docs/analyses.md', render_depth_benchmark),
    'lm-sweep': Block('docs/language-modelling.md', render_lm_sweep),
    'llama-compare': Block('docs/llama.md', render_llama_compare),
    'dry-runs': Block('docs/full-scale.md', render_dry_runs),
    'mnist1d': Block('docs/mnist1d.md', render_mnist1d),
    'replication': Block('docs/analyses.md', _analysis_comparison('replication')),
}
"""Every block, in the order they are rendered."""


def markers(name: str) -> Tuple[str, str]:
    """The begin and end comments of the block ``name``."""
    return docblocks.markers(f'results:{name}')


def render_text(text: str, name: str, table: str) -> str:
    """``text`` with the block ``name`` replaced by ``table``; ``ValueError`` where its markers are not there once."""
    return docblocks.replace_block(text, table, *markers(name))


def check_names(names: Optional[Sequence[str]] = None) -> List[str]:
    """``names`` (every block where None or empty), once each is known to be a block; ``ValueError`` naming the
    unknown ones and the known ones otherwise."""
    if not names:
        return list(BLOCKS)
    unknown = [n for n in names if n not in BLOCKS]
    if unknown:
        raise ValueError(f'unknown block(s) {", ".join(unknown)}; expected some of {", ".join(BLOCKS)}')
    return list(names)


def render_block(root: PathLike, name: str) -> str:
    """The table of the block ``name``, rendered from the committed files of the repository at ``root``.

    Raises ``FileNotFoundError`` naming the block, its document and the missing file, where a file it is rendered
    from is missing."""
    (name,) = check_names([name])
    root = check_root(root)
    doc, render = BLOCKS[name]
    try:
        return render(root)
    except FileNotFoundError as e:
        raise FileNotFoundError(f'block {name} of {doc}: {e}') from e


def stale_blocks(root: PathLike, names: Optional[Sequence[str]] = None) -> List[str]:
    """The blocks (``doc: name``; of ``names``, default all) whose text differs from what the result files of the
    repository at ``root`` render now."""
    root = check_root(root)
    stale = []
    for name in check_names(names):
        doc = BLOCKS[name].doc
        text = (root / doc).read_text(encoding='utf-8')
        if render_text(text, name, render_block(root, name)) != text:
            stale.append(f'{doc}: {name}')
    return stale


def write_blocks(root: PathLike, names: Optional[Sequence[str]] = None) -> List[str]:
    """Render the blocks ``names`` (default all) into their documents under ``root``, each through a temporary file
    and a rename (:func:`stepsnet.utils.docblocks.write_block`, which prints whether it changed); returns the blocks
    that changed (``doc: name``)."""
    root = check_root(root)
    changed = []
    for name in check_names(names):
        doc = BLOCKS[name].doc
        if docblocks.write_block(root / doc, render_block(root, name), *markers(name)):
            changed.append(f'{doc}: {name}')
    return changed
