"""The shortcut ratio ``gamma_l = sigma_0 / sigma_l`` along a residual or Step by Step trunk (the paper's Fig. 2).

``z_0`` is the tensor entering the trunk (the tokens entering ``model.blocks`` of a ViT, the input of a
hierarchical stage's blocks) and ``z_l`` the state after ``l`` blocks. Because the residual stream accumulates
``z_l = z_0 + sum_i R_i``, the pre-norm of block ``l + 1`` scales ``z_0`` by ``1 / sigma_l``: the larger
``sigma_l`` grows, the smaller the part of the original input the block (and the gradient) sees.

How the standard deviation is taken:

* ``reduction='token'`` (default): the std over the channel axis at each position (what a pre-norm LayerNorm
  divides by), combined over the batch and positions as a root mean square. ``reduction='global'`` takes the
  std over every element instead.
* For a :class:`~stepsnet.steps.Steps` trunk the state after block ``l`` is the full-width state returned by
  :meth:`Steps.forward_intermediates` (the block's output concatenated with the chunks not consumed yet), so
  ``gamma`` is over all ``C`` channels present at that point. Two more views are reported: ``gamma_processed``,
  over the channels the current step runs on (``C_s``, compared with the same channels of ``z_0``), and
  ``gamma_chunk_i``, per original input chunk ``i`` (channels ``C_{i-1} .. C_i``).
* Normalised depth is ``l / L`` for ``L`` blocks; ``l = 0`` (the input) has ratio 1.

:func:`shortcut_ratio` measures one model on one input batch (the depth-scaled DeiT-like trunks of Fig. 2 come
from :func:`stepsnet.models.factory.deit_trunk_config`);
:func:`input_batch` reads a real batch from the embedded digits, ImageFolder or CIFAR.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, create_transform
from timm.models.convnext import ConvNeXtBlock
from timm.models.resnet import BasicBlock, Bottleneck

from stepsnet.analysis.complexity import BLOCK_TYPES
from stepsnet.data.images import build_dataset, dataset_mean_std
from stepsnet.steps import Steps
from stepsnet.utils.checkpoint import atomic_write_text
from stepsnet.utils.figures import pyplot, save_figure

__all__ = [
    'Trunk', 'ShortcutProfile', 'find_trunk', 'shortcut_ratio', 'channel_std', 'input_batch',
    'write_profiles_csv', 'plot_profiles', 'summary_table',
]


@dataclass
class Trunk:
    """A sequence of residual blocks whose input is ``z_0``.

    Attributes:
        name: Dotted module path (``blocks``, ``layers.2.blocks``, ``layer3.1``), with ``[start:]`` when the
            sequence starts after a downsampling block.
        blocks: The blocks in execution order (the Steps' blocks for a Steps trunk).
        steps: The :class:`Steps` module when the trunk is one, else None.
        dim: Channel axis of the trunk's tensors.
    """
    name: str
    blocks: List[nn.Module]
    steps: Optional[Steps] = None
    dim: int = -1


@dataclass
class ShortcutProfile:
    """``gamma`` after every block of one trunk.

    Attributes:
        label: Name shown in tables and plots.
        trunk: The trunk's module path.
        num_blocks: ``L``.
        chunks: Channel widths of the original chunks (one chunk for a residual trunk).
        rows: One dict per depth ``l = 0 .. L`` with ``block``, ``depth`` (``l / L``), ``step``, ``width``
            (channels processed at that point), ``sigma``, ``gamma``, ``gamma_processed`` and ``gamma_chunk_i``.
    """
    label: str
    trunk: str
    num_blocks: int
    chunks: Tuple[int, ...]
    rows: List[Dict[str, float]] = field(default_factory=list)

    def ratio_at(self, depth: float, key: str = 'gamma') -> float:
        """``key`` at normalised ``depth`` in [0, 1], linearly interpolated between blocks."""
        if not 0.0 <= depth <= 1.0:
            raise ValueError(f'normalised depth must be in [0, 1], got {depth}')
        pos = depth * self.num_blocks
        lo = int(pos)
        hi = min(lo + 1, self.num_blocks)
        t = pos - lo
        return float((1 - t) * self.rows[lo][key] + t * self.rows[hi][key])


def _block_types() -> Tuple[type, ...]:
    return tuple(BLOCK_TYPES)


def _trunk_dim(blocks: Sequence[nn.Module]) -> int:
    return 1 if isinstance(blocks[0], (BasicBlock, Bottleneck, ConvNeXtBlock)) else -1


def _sequence_trunk(name: str, seq: nn.Module) -> Trunk:
    blocks = list(seq.children())
    start = 0
    if blocks and getattr(blocks[0], 'downsample', None) is not None:
        start = 1  # a ResNet stage: the trunk starts after the strided block, as in the Steps version
    blocks = blocks[start:]
    return Trunk(f'{name}[{start}:]' if start else name, blocks, None, _trunk_dim(blocks))


def find_trunk(model: nn.Module, name: Optional[str] = None) -> Trunk:
    """The trunk of ``model`` to measure.

    Args:
        model: Any model built of residual blocks.
        name: Module path of the trunk (a :class:`Steps` or a sequence of blocks). None picks it: the Steps
            module with the most blocks if there is one (the ViT trunk, stage 3 of a hierarchical model), otherwise
            the longest sequence made only of residual blocks (``blocks`` of a ViT, ``layers.2.blocks`` of Swin,
            ``layer3`` of a ResNet without its first, strided block).

    Raises:
        ValueError: ``name`` is not a module of the model, or is not a trunk; or no trunk exists.
    """
    modules = dict(model.named_modules())
    types = _block_types()
    if name is not None:
        if name not in modules:
            raise ValueError(f'trunk {name!r} is not a module of {type(model).__name__}; expected a path such as '
                             "'blocks' or 'layers.2.blocks'")
        m = modules[name]
        if isinstance(m, Steps):
            return Trunk(name, list(m), m, m.dim)
        children = list(m.children())
        if children and all(isinstance(c, types) for c in children):
            return _sequence_trunk(name, m)
        raise ValueError(f'module {name!r} ({type(m).__name__}) is neither a Steps trunk nor a sequence of residual '
                         f'blocks ({", ".join(t.__name__ for t in types)})')
    steps = [(n, m) for n, m in modules.items() if isinstance(m, Steps)]
    if steps:
        n, m = max(steps, key=lambda nm: len(nm[1]))
        return Trunk(n, list(m), m, m.dim)
    seqs = []
    for n, m in modules.items():
        children = list(m.children())
        if len(children) >= 1 and all(isinstance(c, types) for c in children):
            seqs.append((n, m, len(children)))
    if not seqs:
        raise ValueError(f'{type(model).__name__} has no Steps module and no sequence of residual blocks; expected '
                         'a model built of timm residual blocks (register others with complexity.register_block_type)')
    n, m, _ = max(seqs, key=lambda s: s[2])
    return _sequence_trunk(n, m)


class _Stop(Exception):
    pass


def _capture_input(model: nn.Module, first: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Run ``model`` on ``x`` up to ``first`` and return that module's input."""
    box: List[torch.Tensor] = []

    def hook(_m, args):
        box.append(args[0])
        raise _Stop

    handle = first.register_forward_pre_hook(hook)
    try:
        model(x)
    except _Stop:
        pass
    finally:
        handle.remove()
    if not box:
        raise ValueError(f'the trunk of {type(model).__name__} was not reached by the forward pass')
    return box[0]


def channel_std(x: torch.Tensor, dim: int = -1, reduction: str = 'token') -> float:
    """Standard deviation of ``x`` (population std).

    Args:
        x: A trunk state.
        dim: Channel axis.
        reduction: ``token``: std over channels at each position, root mean square over positions and batch;
            ``global``: std over all elements.
    """
    x = x.detach().double()
    if reduction == 'global':
        return float(x.std(unbiased=False))
    if reduction != 'token':
        raise ValueError(f"reduction must be 'token' or 'global', got {reduction!r}")
    v = x.movedim(dim, -1)
    return float(v.reshape(-1, v.shape[-1]).var(dim=-1, unbiased=False).mean().sqrt())


def _narrow(x: torch.Tensor, dim: int, start: int, width: int) -> torch.Tensor:
    return x.narrow(dim, start, width)


@torch.no_grad()
def shortcut_ratio(
        model: nn.Module,
        images: torch.Tensor,
        trunk: Optional[str] = None,
        reduction: str = 'token',
        label: Optional[str] = None,
) -> ShortcutProfile:
    """Measure ``gamma_l = sigma_0 / sigma_l`` after every block of the model's trunk, in eval mode.

    Args:
        model: Model (its mode is restored afterwards).
        images: Input batch for the whole model.
        trunk: Trunk module path (see :func:`find_trunk`); None picks it.
        reduction: How the std is taken (see :func:`channel_std`).
        label: Name of the profile (default: the model class and trunk).

    Returns:
        The :class:`ShortcutProfile` with ``L + 1`` rows.
    """
    t = find_trunk(model, trunk)
    was_training = model.training
    model.eval()
    try:
        entry = t.steps if t.steps is not None else t.blocks[0]
        z0 = _capture_input(model, entry, images)
        if t.steps is not None:
            plan = t.steps.plan
            chunks = plan.chunks
            _, states = t.steps.forward_intermediates(z0, list(range(len(t.steps))))
            steps_of = [plan.step_of(i) for i in range(plan.num_blocks)]
            widths = [plan.widths[s] for s in steps_of]
        else:
            chunks = (z0.shape[t.dim],)
            states, y = [], z0
            for blk in t.blocks:
                y = blk(y)
                states.append(y)
            steps_of = [0] * len(states)
            widths = [y.shape[t.dim] for y in states]
    finally:
        model.train(was_training)

    dim = t.dim
    offsets = [sum(chunks[:i]) for i in range(len(chunks))]
    sigma0 = channel_std(z0, dim, reduction)
    sigma0_chunk = [channel_std(_narrow(z0, dim, o, c), dim, reduction) for o, c in zip(offsets, chunks)]
    n = len(states)
    first_width = widths[0] if widths else z0.shape[dim]
    rows = [dict(block=0, depth=0.0, step=1, width=first_width, sigma=sigma0, gamma=1.0, gamma_processed=1.0,
                 **{f'gamma_chunk_{i + 1}': 1.0 for i in range(len(chunks))})]
    for i, (y, s, w) in enumerate(zip(states, steps_of, widths)):
        if y.shape[dim] != z0.shape[dim]:
            # a sequence of blocks that changes width (not a trunk): compare over all channels only
            sig = channel_std(y, dim, reduction)
            row = dict(block=i + 1, depth=(i + 1) / n, step=s + 1, width=y.shape[dim], sigma=sig,
                       gamma=sigma0 / sig, gamma_processed=sigma0 / sig)
            row.update({f'gamma_chunk_{j + 1}': float('nan') for j in range(len(chunks))})
            rows.append(row)
            continue
        sig = channel_std(y, dim, reduction)
        sig_p = channel_std(_narrow(y, dim, 0, w), dim, reduction)
        sig0_p = channel_std(_narrow(z0, dim, 0, w), dim, reduction)
        row = dict(block=i + 1, depth=(i + 1) / n, step=s + 1, width=w, sigma=sig, gamma=sigma0 / sig,
                   gamma_processed=sig0_p / sig_p)
        for j, (o, c) in enumerate(zip(offsets, chunks)):
            row[f'gamma_chunk_{j + 1}'] = sigma0_chunk[j] / channel_std(_narrow(y, dim, o, c), dim, reduction)
        rows.append(row)
    return ShortcutProfile(label or f'{type(model).__name__}:{t.name}', t.name, n, tuple(chunks), rows)


# ---------------------------------------------------------------------------------------------- model configs

def input_batch(
        dataset: str = 'digits',
        data_dir: Optional[str] = None,
        split: str = 'val',
        img_size: int = 224,
        batch_size: int = 16,
        mean: Optional[Sequence[float]] = None,
        std: Optional[Sequence[float]] = None,
        seed: int = 0,
) -> torch.Tensor:
    """A batch of real images (evaluation transform), or ``dataset='random'`` for standard-normal noise.

    The images are a fixed random subset of the split (``seed``), resized to ``img_size`` and normalised with
    ``mean`` / ``std`` (default: the dataset's own constants, else ImageNet's).
    """
    g = torch.Generator().manual_seed(seed)
    if dataset == 'random':
        return torch.randn(batch_size, 3, img_size, img_size, generator=g)
    ds_norm = dataset_mean_std(dataset)
    if mean is None or std is None:
        mean, std = ds_norm if ds_norm is not None else (IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD)
    tf = create_transform(input_size=img_size, is_training=False, interpolation='bicubic', mean=tuple(mean),
                          std=tuple(std), crop_pct=1.0)
    ds = build_dataset(dataset, data_dir, split, tf, img_size=img_size)
    if len(ds) == 0:
        raise ValueError(f'dataset {dataset!r} split {split!r} is empty')
    idx = torch.randperm(len(ds), generator=g)[:batch_size].tolist()
    return torch.stack([ds[i][0] for i in idx])


# ---------------------------------------------------------------------------------------------- reporting

def write_profiles_csv(profiles: Sequence[ShortcutProfile], path: str) -> None:
    """One row per (profile, depth); the chunk columns are the union over profiles."""
    chunk_cols = sorted({k for p in profiles for r in p.rows for k in r if k.startswith('gamma_chunk_')},
                        key=lambda k: int(k.rsplit('_', 1)[1]))
    cols = ['label', 'trunk', 'num_blocks', 'block', 'depth', 'step', 'width', 'sigma', 'gamma', 'gamma_processed']
    cols += chunk_cols
    lines = [','.join(cols)]
    for p in profiles:
        for r in p.rows:
            vals = dict(r, label=p.label, trunk=p.trunk, num_blocks=p.num_blocks)
            lines.append(','.join(_fmt(vals.get(c, '')) for c in cols))
    atomic_write_text(path, '\n'.join(lines) + '\n')


def read_profiles_csv(path: str) -> List[ShortcutProfile]:
    """Profiles written by :func:`write_profiles_csv`."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f'shortcut-ratio CSV {path!r} does not exist')
    out: Dict[str, ShortcutProfile] = {}
    with open(path, newline='') as f:
        for r in csv.DictReader(f):
            p = out.get(r['label'])
            if p is None:
                chunks = tuple(1 for k in r if k.startswith('gamma_chunk_') and r[k] != '')
                p = out[r['label']] = ShortcutProfile(r['label'], r['trunk'], int(r['num_blocks']), chunks)
            p.rows.append({k: float(v) for k, v in r.items() if k not in ('label', 'trunk') and v != ''})
    return list(out.values())


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f'{v:.6g}'
    s = str(v)
    return f'"{s}"' if ',' in s else s


def summary_table(profiles: Sequence[ShortcutProfile], depths: Sequence[float] = (0.25, 0.5, 0.75, 1.0)) -> str:
    """A markdown table of ``gamma`` (all channels, and processed channels) at a few normalised depths."""
    head = '| model | trunk | blocks | ' + ' | '.join(f'gamma @ {d:g}' for d in depths)
    head += ' | ' + ' | '.join(f'processed @ {d:g}' for d in depths) + ' |'
    lines = [head, '|' + '---|' * (3 + 2 * len(depths))]
    for p in profiles:
        vals = [f'{p.ratio_at(d):.3f}' for d in depths] + [f'{p.ratio_at(d, "gamma_processed"):.3f}' for d in depths]
        lines.append(f'| {p.label} | {p.trunk} | {p.num_blocks} | ' + ' | '.join(vals) + ' |')
    return '\n'.join(lines) + '\n'


def plot_profiles(profiles: Sequence[ShortcutProfile], path: str, title: str = '', processed: bool = True) -> None:
    """The paper's axes: normalised depth (x) against ``sigma_0 / sigma_l`` (y); dashed: processed channels."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    for p in profiles:
        xs = [r['depth'] for r in p.rows]
        line, = ax.plot(xs, [r['gamma'] for r in p.rows], label=p.label, lw=2)
        if processed and len(p.chunks) > 1:
            ax.plot(xs, [r['gamma_processed'] for r in p.rows], ls='--', lw=1.2, color=line.get_color(),
                    label=f'{p.label} (processed channels)')
    ax.set_xlabel('normalised depth $l / L$')
    ax.set_ylabel(r'ratio $\sigma_0 / \sigma_l$')
    ax.set_xlim(0, 1)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
