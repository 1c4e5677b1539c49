"""Model complexity as the paper counts it: parameters, FLOPs (multiply-adds, attention included), blocks, layers.

* FLOPs are multiply-accumulates of one forward pass on one image, measured with PyTorch's ``FlopCounterMode``
  (which reports 2 FLOPs per multiply-add; we halve it). Fused attention kernels are not counted by it on the
  CPU, so every attention module with timm's ``fused_attn`` switch runs its explicit ``q @ k^T`` / ``attn @ v``
  path while counting: the attention matmuls are included, as in the paper.
* Blocks are residual blocks. Layers follow the paper's rule: every convolution or linear layer counts 1, and
  every attention counts 1 more (a Transformer block is qkv, attention, projection and two MLP layers = 5);
  the 1x1 projection on a ResNet block's shortcut does not count (ResNet naming: ResNet-50 has 50 layers).
"""
import contextlib
from dataclasses import asdict, dataclass
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import timm
import torch
import torch.nn as nn
from timm.models.convnext import ConvNeXtBlock
from timm.models.resnet import BasicBlock, Bottleneck
from timm.models.swin_transformer import SwinTransformerBlock
from timm.models.vision_transformer import Block as ViTBlock
from torch.utils.flop_counter import FlopCounterMode

__all__ = [
    'BLOCK_TYPES', 'PAPER_TABLE1', 'MODEL_PAIRS', 'ComplexityRow', 'count_params', 'count_flops', 'count_blocks',
    'count_layers', 'complexity_row', 'complexity_table', 'format_table', 'register_block_type',
]

BLOCK_TYPES: List[type] = [BasicBlock, Bottleneck, ViTBlock, SwinTransformerBlock, ConvNeXtBlock]


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
def count_flops(model: nn.Module, input_size: Sequence[int] = (3, 224, 224)) -> int:
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
        if isinstance(m, (BasicBlock, Bottleneck)) and m.downsample is not None:
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
    model = timm.create_model(name, pretrained=False, device='meta')
    params = count_params(model)
    macs = count_flops(model, input_size)
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
