"""Model complexity as the paper counts it: parameters, FLOPs (multiply-adds, attention included), blocks, layers.

* FLOPs are multiply-accumulates of one forward pass on one image, measured with PyTorch's ``FlopCounterMode``
  (which reports 2 FLOPs per multiply-add; we halve it). Fused attention kernels are not counted by it on the
  CPU, so every attention module with timm's ``fused_attn`` switch runs its explicit ``q @ k^T`` / ``attn @ v``
  path while counting: the attention matmuls are included, as in the paper.
* The twin table counts any timm baseline beside its Steps twin (:mod:`stepsnet.models.twins`), the parity table of
  ``docs/models.md``.
* Blocks are residual blocks. Layers follow the paper's rule: every convolution or linear layer counts 1, and
  every attention counts 1 more (a Transformer block is qkv, attention, projection and two MLP layers = 5);
  the 1x1 projection on a ResNet block's shortcut does not count (ResNet naming: ResNet-50 has 50 layers).
"""
import contextlib
import warnings
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import timm
import torch
import torch.nn as nn
from timm.models.convnext import ConvNeXtBlock
from timm.models.resnet import BasicBlock, Bottleneck
from timm.models.swin_transformer import SwinTransformerBlock
from timm.models.vision_transformer import Block as ViTBlock
from torch.utils.flop_counter import FlopCounterMode

from stepsnet.models.steps_1d import BasicBlock1d
from stepsnet.models.twins import TWIN_BASELINES, meta_pair, step_plans, twin_args, twin_name
from stepsnet.steps import Steps
from stepsnet.utils.meta import on_meta

__all__ = [
    'BLOCK_TYPES', 'PAPER_TABLE1', 'MODEL_PAIRS', 'ComplexityRow', 'count_params', 'count_macs', 'count_flops',
    'count_blocks', 'count_layers', 'complexity_row', 'complexity_table', 'format_table', 'register_block_type',
    'TwinRow', 'twin_row', 'twin_table', 'format_twin_table',
]

BLOCK_TYPES: List[type] = [BasicBlock, Bottleneck, BasicBlock1d, ViTBlock, SwinTransformerBlock, ConvNeXtBlock]


def register_block_type(cls: type) -> type:
    """Count ``cls`` as a residual block (usable as a class decorator)."""
    if cls not in BLOCK_TYPES:
        BLOCK_TYPES.append(cls)
    return cls


# Table 1 of the paper (ImageNet-1K, 224x224): blocks, layers, params (M), FLOPs (G multiply-adds).
PAPER_TABLE1: Dict[str, Tuple[int, int, float, float]] = {
    'resnet18': (8, 18, 11.7, 1.8),
    'resnet34': (16, 34, 21.8, 3.7),
    'resnet50': (16, 50, 25.6, 4.1),
    'deit_tiny_patch16_224': (12, 62, 5.7, 1.3),
    'deit_small_patch16_224': (12, 62, 22.1, 4.6),
    'deit_base_patch16_224': (12, 62, 86.6, 17.6),
    'swin_tiny_patch4_window7_224': (12, 65, 28.3, 4.5),
    'swin_small_patch4_window7_224': (24, 125, 49.6, 8.8),
    'swin_base_patch4_window7_224': (24, 125, 87.8, 15.5),
    'steps_resnet18': (18, 38, 11.7, 1.8),
    'steps_resnet34': (34, 70, 21.8, 3.7),
    'steps_resnet50': (34, 104, 25.6, 4.1),
    'steps_deit_tiny_patch16_224': (24, 122, 5.7, 1.3),
    'steps_deit_small_patch16_224': (24, 122, 22.1, 4.7),
    'steps_deit_base_patch16_224': (24, 122, 86.7, 17.9),
    'steps_swin_tiny_patch4_window7_224': (26, 135, 27.8, 4.5),
    'steps_swin_small_patch4_window7_224': (38, 195, 49.1, 8.8),
    'steps_swin_base_patch4_window7_224': (38, 195, 86.7, 15.5),
}

# Steps model -> its residual baseline in timm. Rows whose Steps model is not registered are skipped.
MODEL_PAIRS: Tuple[Tuple[str, str], ...] = (
    ('steps_resnet18', 'resnet18'),
    ('steps_resnet34', 'resnet34'),
    ('steps_resnet50', 'resnet50'),
    ('steps_deit_tiny_patch16_224', 'deit_tiny_patch16_224'),
    ('steps_deit_small_patch16_224', 'deit_small_patch16_224'),
    ('steps_deit_base_patch16_224', 'deit_base_patch16_224'),
    ('steps_swin_tiny_patch4_window7_224', 'swin_tiny_patch4_window7_224'),
    ('steps_swin_small_patch4_window7_224', 'swin_small_patch4_window7_224'),
    ('steps_swin_base_patch4_window7_224', 'swin_base_patch4_window7_224'),
    ('steps_convnext_tiny', 'convnext_tiny'),
    ('steps_convnext_small', 'convnext_small'),
    ('steps_convnext_base', 'convnext_base'),
)


def count_params(model: nn.Module) -> int:
    """Number of parameters (shared tensors counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


@contextlib.contextmanager
def explicit_attention(model: nn.Module) -> Iterator[None]:
    """Make every module with a ``fused_attn`` switch run its explicit matmul path inside the context."""
    switched = [m for m in model.modules() if getattr(m, 'fused_attn', False) is True]
    for m in switched:
        m.fused_attn = False
    try:
        yield
    finally:
        for m in switched:
            m.fused_attn = True


@torch.no_grad()
def count_macs(model: nn.Module, input_size: Sequence[int] = (3, 224, 224)) -> int:
    """Multiply-adds of one forward pass on one input of ``input_size`` (C, H, W), attention included."""
    was_training = model.training
    model.eval()
    p = next(model.parameters())
    x = torch.zeros((1, *input_size), device=p.device, dtype=p.dtype)
    counter = FlopCounterMode(display=False)
    try:
        with explicit_attention(model), counter:
            model(x)
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2


def count_flops(model: nn.Module, input_size: Sequence[int] = (3, 224, 224)) -> int:
    """Deprecated name of :func:`count_macs`, which it returns: it counts multiply-adds (the paper's "FLOPs"), not
    floating-point operations (:func:`stepsnet.utils.dryrun.count_call_flops` counts those, of a call)."""
    warnings.warn('stepsnet.analysis.complexity.count_flops counts multiply-adds and is now named count_macs',
                  DeprecationWarning, stacklevel=2)
    return count_macs(model, input_size)


def _residual_blocks(model: nn.Module) -> List[nn.Module]:
    types = tuple(BLOCK_TYPES)
    return [m for m in model.modules() if isinstance(m, types)]


def count_blocks(model: nn.Module) -> int:
    """Number of residual blocks."""
    return len(_residual_blocks(model))


def count_layers(model: nn.Module) -> int:
    """Layers by the paper's rule: convs and linears, plus 1 per attention, minus ResNet shortcut projections."""
    shortcut = set()
    for m in model.modules():
        if isinstance(m, (BasicBlock, Bottleneck, BasicBlock1d)) and m.downsample is not None:
            shortcut.update(id(s) for s in m.downsample.modules())
    n = 0
    for m in model.modules():
        if id(m) in shortcut:
            continue
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            n += 1
        elif hasattr(m, 'fused_attn'):
            n += 1
    return n


@dataclass
class ComplexityRow:
    name: str
    baseline: str
    blocks: int
    layers: int
    params_m: float
    gflops: float
    paper_params_m: Optional[float]
    paper_gflops: Optional[float]
    params: int = 0
    macs: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def complexity_row(name: str, baseline: str = '', input_size: Sequence[int] = (3, 224, 224)) -> ComplexityRow:
    """Measure one registered model (built on the meta device: shapes only, no memory, no arithmetic)."""
    with on_meta():
        model = timm.create_model(name, pretrained=False)
    params = count_params(model)
    macs = count_macs(model, input_size)
    paper = PAPER_TABLE1.get(name)
    return ComplexityRow(
        name=name, baseline=baseline, blocks=count_blocks(model), layers=count_layers(model),
        params_m=round(params / 1e6, 2), gflops=round(macs / 1e9, 2),
        paper_params_m=paper[2] if paper else None, paper_gflops=paper[3] if paper else None,
        params=params, macs=macs,
    )


def complexity_table(
        names: Optional[Sequence[str]] = None,
        input_size: Sequence[int] = (3, 224, 224),
) -> List[ComplexityRow]:
    """Rows for every registered Steps model of :data:`MODEL_PAIRS` (or those in ``names``) and its baseline."""
    registered = set(timm.list_models('steps_*'))
    rows = []
    for steps_name, base_name in MODEL_PAIRS:
        if steps_name not in registered or (names and steps_name not in names and base_name not in names):
            continue
        rows.append(complexity_row(base_name, '', input_size))
        rows.append(complexity_row(steps_name, base_name, input_size))
    return rows


def _pct(a: float, b: Optional[float]) -> str:
    return '' if not b else f'{100.0 * (a - b) / b:+.2f}%'


def format_table(rows: Sequence[ComplexityRow], fmt: str = 'md') -> str:
    """Render rows as markdown (with relative differences) or CSV."""
    cols = ['name', 'baseline', 'blocks', 'layers', 'params_m', 'gflops', 'paper_params_m', 'paper_gflops']
    if fmt == 'csv':
        lines = [','.join(cols)]
        for r in rows:
            d = r.as_dict()
            lines.append(','.join('' if d[c] is None else str(d[c]) for c in cols))
        return '\n'.join(lines) + '\n'
    if fmt != 'md':
        raise ValueError(f"format must be 'md' or 'csv', got {fmt!r}")
    by_name = {r.name: r for r in rows}
    head = cols + ['params_vs_baseline', 'gflops_vs_paper']
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for r in rows:
        base = by_name.get(r.baseline)
        cells = [
            r.name, r.baseline, str(r.blocks), str(r.layers), f'{r.params_m:.2f}', f'{r.gflops:.2f}',
            '' if r.paper_params_m is None else f'{r.paper_params_m:.1f}',
            '' if r.paper_gflops is None else f'{r.paper_gflops:.1f}',
            _pct(r.params, base.params) if base else '', _pct(r.macs / 1e9, r.paper_gflops),
        ]
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'


# ----------------------------------------------------------------------------------------------------------------
# Steps twins of timm baselines


@dataclass
class TwinRow:
    """A timm baseline beside its Steps twin: plans, residual blocks, parameters and multiply-adds."""
    baseline: str
    family: str
    plans: Dict[str, str]
    blocks: Tuple[int, int]
    params: Tuple[int, int]
    macs: Tuple[int, int]
    input_size: Tuple[int, int, int]

    @property
    def params_delta(self) -> float:
        return (self.params[1] - self.params[0]) / self.params[0]

    @property
    def macs_delta(self) -> float:
        return (self.macs[1] - self.macs[0]) / self.macs[0]


def _twin_macs(base: nn.Module, twin: nn.Module, input_size: Tuple[int, ...]) -> Tuple[int, int]:
    """Multiply-adds of a baseline and its twin from one counted forward of the baseline.

    The twin differs only inside its :class:`Steps` trunks, so its count is the baseline's minus the blocks each
    trunk replaces plus the trunk's own blocks. Blocks of one width in a trunk cost the same, so each width is
    counted once, on one block at the trunk's input shape (captured from the baseline's forward).
    """
    trunks = {n: m for n, m in twin.named_modules() if isinstance(m, Steps)}
    shapes: Dict[str, Tuple[int, ...]] = {}

    def keep_shape(name: str, module: nn.Module, args: Tuple[Any, ...]) -> None:
        shapes.setdefault(name, tuple(args[0].shape[1:]))

    hooks = [base.get_submodule(n).register_forward_pre_hook(partial(keep_shape, n)) for n in trunks]
    try:
        base_macs = count_macs(base, input_size)
    finally:
        for h in hooks:
            h.remove()
    twin_macs = base_macs
    for n, trunk in trunks.items():
        ref = base.get_submodule(n)
        if isinstance(ref, tuple(BLOCK_TYPES)):  # ResNet: the trunk replaces the stage's blocks after the first
            replaced, stage = ref, base.get_submodule(n.rsplit('.', 1)[0])
            depth = len(stage) - 1
        else:  # the trunk replaces the stage's (or the ViT's) sequence of blocks
            replaced, depth = ref[0], len(ref)
        shape, dim = list(shapes[n]), trunk.dim % (len(shapes[n]) + 1) - 1
        twin_macs -= depth * count_macs(replaced, shape)
        first = 0
        for width, blocks in zip(trunk.plan.widths, trunk.plan.depths):
            if blocks:
                shape[dim] = width
                twin_macs += blocks * count_macs(trunk[first], shape)
            first += blocks
    return base_macs, twin_macs


def twin_row(name: str) -> TwinRow:
    """Count a baseline and its twin, both built on the meta device (no memory, no weights): parameters from the
    modules, multiply-adds of one forward pass at the baseline's input size, attention matmuls included."""
    family, _ = twin_args(name)
    base, twin = meta_pair(name)
    size = tuple(base.pretrained_cfg['input_size'])
    return TwinRow(
        baseline=name, family=family.name, plans={k: str(p) for k, p in step_plans(twin).items()},
        blocks=(count_blocks(base), count_blocks(twin)), params=(count_params(base), count_params(twin)),
        macs=_twin_macs(base, twin, size), input_size=size)


def twin_table(names: Sequence[str] = TWIN_BASELINES) -> List[TwinRow]:
    """One :class:`TwinRow` per baseline."""
    return [twin_row(n) for n in names]


def _plan_cell(plans: Mapping[str, str]) -> str:
    return ' / '.join(plans.values())


def format_twin_table(rows: Sequence[TwinRow], paper: Optional[Sequence[str]] = None) -> str:
    """Markdown: baseline, the twin's plans, blocks, parameters and GFLOPs (multiply-adds) with their differences."""
    paper = set(paper or ())
    head = ['timm baseline', 'input', 'Steps twin plans (width x blocks; stage 3 / stage 4)', 'blocks',
            'params (M)', 'Δ params', 'GFLOPs', 'Δ FLOPs']
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for r in rows:
        name = f'`{r.baseline}`' + (' (paper)' if twin_name(r.baseline) in paper else '')
        lines.append('| ' + ' | '.join([
            name, str(r.input_size[-1]), _plan_cell(r.plans), f'{r.blocks[0]} → {r.blocks[1]}',
            f'{r.params[0] / 1e6:.2f} → {r.params[1] / 1e6:.2f}', f'{100 * r.params_delta:+.2f}%',
            f'{r.macs[0] / 1e9:.2f} → {r.macs[1] / 1e9:.2f}', f'{100 * r.macs_delta:+.2f}%',
        ]) + ' |')
    return '\n'.join(lines) + '\n'
