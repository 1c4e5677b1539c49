"""The Step by Step Network macro design, in one place.

Step by Step Network (StepsNet), arXiv:2511.14329. A residual trunk of width ``C`` is replaced by ``n`` steps:
the input is split along channels into consecutive chunks of widths ``d_1 .. d_n``; step ``i`` is a plain
stack of the host model's residual blocks at the cumulative width ``C_i = d_1 + .. + d_i`` and receives the
previous step's output concatenated with the next untouched chunk::

    y_1 = F_1(x_1),   y_i = F_i(concat(y_{i-1}, x_i)),   output = y_n

Nothing is added at the split or the concat, so a plan with the baseline's compute has the baseline's
parameters. This module holds the three pieces every model family shares:

* :class:`StepPlan`, the validated per-step widths, block counts and head counts;
* :func:`plan_steps`, the recursive ``sqrt(2)`` substitution that derives a plan from a baseline trunk;
* :class:`Steps`, the module that runs a plan with any residual block (``make_block(width, index)``)
  over a channel axis of 1 (NCHW) or -1 (NLC / NHWC).
"""
import math
from dataclasses import dataclass
from typing import Callable, Iterator, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

__all__ = ['StepPlan', 'plan_steps', 'step_width', 'step_width_options', 'Steps', 'set_step_checkpointing',
           'checkpoint_stages']

SQRT2 = math.sqrt(2.0)


@dataclass(frozen=True)
class StepPlan:
    """Widths, block counts and (optionally) attention heads of an n-step trunk.

    Attributes:
        widths: Cumulative width ``C_i`` of each step, strictly increasing; the last is the trunk width.
        depths: Number of residual blocks ``D_i`` in each step (0 allowed: the chunk is only concatenated).
        heads: Attention heads of each step, or None for blocks without heads. Each must divide its width.
    """
    widths: Tuple[int, ...]
    depths: Tuple[int, ...]
    heads: Optional[Tuple[int, ...]] = None

    def __post_init__(self):
        object.__setattr__(self, 'widths', tuple(int(w) for w in self.widths))
        object.__setattr__(self, 'depths', tuple(int(d) for d in self.depths))
        if self.heads is not None:
            object.__setattr__(self, 'heads', tuple(int(h) for h in self.heads))
        if not self.widths:
            raise ValueError('StepPlan needs at least one step, got widths=()')
        if len(self.depths) != len(self.widths):
            raise ValueError(
                f'StepPlan: {len(self.widths)} widths {self.widths} but {len(self.depths)} depths {self.depths}; '
                'expected one depth per step')
        if self.widths[0] <= 0:
            raise ValueError(f'StepPlan: widths must be positive, got first width {self.widths[0]}')
        for i in range(1, len(self.widths)):
            if self.widths[i] <= self.widths[i - 1]:
                raise ValueError(
                    f'StepPlan: widths must be strictly increasing (they are cumulative chunk widths), '
                    f'got {self.widths[i - 1]} then {self.widths[i]} at step {i + 1} in {self.widths}')
        for i, d in enumerate(self.depths):
            if d < 0:
                raise ValueError(f'StepPlan: depth of step {i + 1} is {d}; expected a block count >= 0')
        if self.heads is not None:
            if len(self.heads) != len(self.widths):
                raise ValueError(
                    f'StepPlan: {len(self.heads)} head counts {self.heads} for {len(self.widths)} steps; '
                    'expected one per step')
            for w, h in zip(self.widths, self.heads):
                if h <= 0 or w % h:
                    raise ValueError(f'StepPlan: {h} heads do not divide width {w}; expected a divisor of {w}')

    @property
    def channels(self) -> int:
        """Width of the trunk's input and output."""
        return self.widths[-1]

    @property
    def num_steps(self) -> int:
        return len(self.widths)

    @property
    def num_blocks(self) -> int:
        return sum(self.depths)

    @property
    def chunks(self) -> Tuple[int, ...]:
        """Widths ``d_i`` of the input chunks, first channels first."""
        return tuple(w - p for w, p in zip(self.widths, (0,) + self.widths[:-1]))

    def block_widths(self) -> List[int]:
        """Width of every block in execution order."""
        return [w for w, d in zip(self.widths, self.depths) for _ in range(d)]

    def block_heads(self) -> List[int]:
        """Head count of every block in execution order (requires ``heads``)."""
        if self.heads is None:
            raise ValueError('StepPlan has no head counts; build it with heads=...')
        return [h for h, d in zip(self.heads, self.depths) for _ in range(d)]

    def step_of(self, index: int) -> int:
        """Step (0-based) that block ``index`` (0-based, execution order) belongs to."""
        if not 0 <= index < self.num_blocks:
            raise IndexError(f'block index {index} out of range for a plan of {self.num_blocks} blocks')
        end = 0
        for s, d in enumerate(self.depths):
            end += d
            if index < end:
                return s
        raise AssertionError('unreachable')

    def heads_for(self, width: int) -> int:
        """Head count of the step of this width."""
        if self.heads is None:
            raise ValueError('StepPlan has no head counts; build it with heads=...')
        if width not in self.widths:
            raise ValueError(f'width {width} is not a step width of this plan {self.widths}')
        return self.heads[self.widths.index(width)]

    def cost(self, block_cost: Callable[[int], float] = lambda w: w * w) -> float:
        """Total cost of the blocks, each costing ``block_cost(width)`` (default: quadratic in width)."""
        return float(sum(d * block_cost(w) for w, d in zip(self.widths, self.depths)))

    def relative_cost(self, depth: int, block_cost: Callable[[int], float] = lambda w: w * w) -> float:
        """Cost of this plan over that of the baseline trunk (``depth`` blocks at the full width)."""
        return self.cost(block_cost) / (depth * block_cost(self.channels))

    def truncated(self, num_blocks: int) -> 'StepPlan':
        """The plan that keeps only the first ``num_blocks`` blocks; later steps keep their chunks (0 blocks)."""
        if not 0 <= num_blocks <= self.num_blocks:
            raise ValueError(f'cannot keep {num_blocks} blocks of a plan with {self.num_blocks}')
        depths, left = [], num_blocks
        for d in self.depths:
            depths.append(min(d, left))
            left -= depths[-1]
        return StepPlan(self.widths, tuple(depths), self.heads)

    def __str__(self) -> str:
        if self.heads is None:
            return ', '.join(f'{w}x{d}' for w, d in zip(self.widths, self.depths))
        return ', '.join(f'{w}/H{h}x{d}' for w, h, d in zip(self.widths, self.heads, self.depths))


def _even_neighbours(target: float) -> List[int]:
    lo = max(2, 2 * math.floor(target / 2))
    hi = max(2, 2 * math.ceil(target / 2))
    return sorted({lo, hi}, key=lambda h: (abs(h - target), h))


def step_width(
        width: int,
        level: int,
        heads: Optional[int] = None,
        multiple_of: Optional[int] = None,
) -> Tuple[int, Optional[int]]:
    """Width (and heads) of the step ``level`` substitutions below a trunk of ``width``.

    The exact width is ``width / sqrt(2)**level``. Without ``multiple_of`` it is floored (the ResNet tables:
    512 -> 362, 256, 181, 128, 90, 64). With ``multiple_of`` it is the multiple of that number nearest to the
    exact width that the step's head count divides (the Transformer tables: 1024 -> 720 with 24 heads).

    Head counts scale with the width, ``heads / sqrt(2)**level``: kept when that is a whole number, otherwise
    one of the two even numbers around it (the nearer first) that divides the width. This reproduces every
    head count of the paper's tables (e.g. 272/H8 and 544/H16 in Swin, 272/H4 in DeiT-S, 136/H2 in DeiT-T).

    Returns:
        (width, heads); heads is None when ``heads`` is None.
    """
    return step_width_options(width, level, heads, multiple_of, count=1)[0]


def step_width_options(
        width: int,
        level: int,
        heads: Optional[int] = None,
        multiple_of: Optional[int] = None,
        count: int = 3,
) -> List[Tuple[int, Optional[int]]]:
    """The ``count`` widths (and heads) nearest to ``width / sqrt(2)**level`` that the rule of :func:`step_width`
    allows, nearest first (the first is :func:`step_width`'s): with ``multiple_of``, the multiples of it that a head
    count of the rule divides; without, the floored width and (for a trunk without heads) the whole widths next to
    it. A step at level 0 is the trunk's own width only.

    Raises:
        ValueError: No width near the exact one fits a head count of the rule.
    """
    if level < 0:
        raise ValueError(f'substitution level must be >= 0, got {level}')
    exact = width / SQRT2 ** level
    if level == 0:
        return [(width, heads)]
    if multiple_of is None:
        floor = int(math.floor(exact + 1e-9))
        # the floor, then (a trunk without heads) the whole widths next to it
        candidates = [floor] + ([] if heads is not None else sorted(
            {c for k in range(1, 9) for c in (floor - k, floor + k) if c >= 1}, key=lambda c: (abs(c - exact), c)))
    else:
        m = multiple_of
        base = int(round(exact / m)) * m
        candidates = sorted({max(m, base + k * m) for k in range(-8, 9)}, key=lambda c: (abs(c - exact), c))
    if heads is None:
        return [(c, None) for c in candidates[:count]]
    head_target = heads / SQRT2 ** level
    if abs(head_target - round(head_target)) < 1e-9:
        head_options = [int(round(head_target))]
    else:
        head_options = _even_neighbours(head_target)
    found = []
    for c in candidates:
        fits = [h for h in head_options if c % h == 0]
        if fits:
            found.append((c, fits[0]))
            if len(found) == count:
                break
    if not found:
        raise ValueError(
            f'no width near {exact:.1f} (multiple of {multiple_of}) is divisible by a head count in {head_options} '
            f'(trunk width {width}, heads {heads}, level {level})')
    return found


def plan_steps(
        width: int,
        depth: int,
        num_steps: int,
        move: int,
        heads: Optional[int] = None,
        multiple_of: Optional[int] = None,
        step_heads: Optional[Mapping[int, int]] = None,
) -> StepPlan:
    """Derive an n-step plan from a baseline trunk of ``depth`` blocks at ``width``.

    Starting from the single step ``[width x depth]``, each substitution takes ``move`` blocks of the current
    first step (width ``w``) and replaces them by ``2 * move`` blocks in a new first step of width
    ``w / sqrt(2)``. The block cost grows with ``width**2``, so compute is unchanged and depth grows by
    ``move`` per substitution; ``num_steps - 1`` substitutions give ``num_steps`` steps.

    Examples (width x blocks)::

        plan_steps(384, 12, 3, 6, heads=6, multiple_of=8)   -> 192/H3x12, 272/H4x6, 384/H6x6  (Steps-DeiT-S)
        plan_steps(256, 5, 5, 3)                            -> 64x6, 90x3, 128x3, 181x3, 256x2 (ResNet stage 3)

    Args:
        width: Baseline trunk width (the plan's last width).
        depth: Baseline block count.
        num_steps: Number of steps; 1 returns the baseline unchanged.
        move: Blocks taken from the first step at each substitution (``k``).
        heads: Baseline attention heads, for Transformer trunks.
        multiple_of: Round widths to this multiple (Transformers use 8); None floors them (ResNet).
        step_heads: Explicit head count per step width, overriding the derived one.

    Returns:
        The validated :class:`StepPlan`.
    """
    if width <= 0 or depth < 0:
        raise ValueError(f'baseline trunk must have width > 0 and depth >= 0, got width={width}, depth={depth}')
    if num_steps < 1:
        raise ValueError(f'num_steps must be >= 1, got {num_steps}')
    if move < 1 and num_steps > 1:
        raise ValueError(f'move (blocks per substitution) must be >= 1, got {move}')
    if heads is not None and width % heads:
        raise ValueError(f'{heads} heads do not divide the trunk width {width}')
    levels = [num_steps - 1 - i for i in range(num_steps)]  # first step is the deepest substitution
    depths = [depth]
    for _ in range(num_steps - 1):
        if depths[0] < move:
            raise ValueError(
                f'cannot move {move} blocks out of a first step with {depths[0]} blocks '
                f'(trunk {width}x{depth}, {num_steps} steps); use fewer steps or a smaller move')
        depths = [2 * move, depths[0] - move] + depths[1:]
    widths, head_counts = [], []
    for level in levels:
        w, h = step_width(width, level, heads, multiple_of)
        if step_heads is not None and w in step_heads:
            h = step_heads[w]
        widths.append(w)
        head_counts.append(h)
    return StepPlan(tuple(widths), tuple(depths), tuple(head_counts) if heads is not None else None)


@torch.fx.wrap  # a leaf call in FX graphs (symbolic tracing cannot branch on a shape)
def _check_channels(x: torch.Tensor, dim: int, channels: int, plan: str) -> None:
    if x.shape[dim] != channels:
        raise ValueError(
            f'Steps expected {channels} channels on dim {dim} (plan [{plan}]), got input of shape '
            f'({", ".join([str(d) for d in x.shape])})')


class Steps(nn.Module):
    """Run an n-step plan: split the input along channels, run each step's blocks, concatenate the next chunk.

    Blocks are registered as children ``0 .. num_blocks - 1`` in execution order, so a trunk of Steps has the
    same parameter names as a plain block sequence (``blocks.7.attn.qkv.weight``).

    Args:
        plan: The :class:`StepPlan`.
        make_block: ``make_block(width, index) -> nn.Module``, a residual block at ``width`` channels; ``index``
            is the block's position in execution order (for drop-path schedules, shifted windows, ...).
        dim: Channel axis: 1 for NCHW feature maps, -1 for NLC tokens or NHWC maps.
        channels: Width of the trunk the plan replaces; when given, the plan's last width must equal it.
    """

    # typed for TorchScript, which compiles ``forward`` and ``_run`` (the plan itself is plain Python)
    dim: int
    channels: int
    grad_checkpointing: bool
    checkpoint_steps: int
    _chunks: List[int]
    _step_of: List[int]
    _plan_str: str

    def __init__(
            self,
            plan: StepPlan,
            make_block: Callable[[int, int], nn.Module],
            dim: int = 1,
            channels: Optional[int] = None,
    ):
        super().__init__()
        if not isinstance(plan, StepPlan):
            raise TypeError(f'plan must be a StepPlan, got {type(plan).__name__}')
        if channels is not None and plan.channels != channels:
            raise ValueError(
                f'the plan [{plan}] ends at width {plan.channels}, but the trunk has {channels} channels; '
                'expected the last step width to equal the channels')
        self.dim = dim
        self.grad_checkpointing = False
        self.checkpoint_steps = 0
        for i, w in enumerate(plan.block_widths()):
            self.add_module(str(i), make_block(w, i))
        self._set_plan(plan)

    def _set_plan(self, plan: StepPlan) -> None:
        self.plan = plan
        self.channels = plan.channels
        self._chunks = list(plan.chunks)
        self._step_of = [plan.step_of(i) for i in range(plan.num_blocks)]
        self._plan_str = str(plan)

    def __len__(self) -> int:
        return self.plan.num_blocks

    def __iter__(self) -> Iterator[nn.Module]:
        return iter(self._modules.values())

    def __getitem__(self, index: int) -> nn.Module:
        return list(self._modules.values())[index]

    def extra_repr(self) -> str:
        return f'plan=[{self.plan}], dim={self.dim}'

    def set_step_checkpointing(self, steps: int) -> None:
        """Recompute the blocks of the first ``steps`` steps in the backward pass instead of saving their activations.

        The narrow first steps hold most of a Steps trunk's blocks, and so most of the activations that training
        keeps beyond the baseline's; checkpointing only them trades their forward compute (a small part of the
        trunk's, their widths being small) for that memory. ``0`` turns it off. ``grad_checkpointing`` (every
        block) takes precedence.
        """
        if not 0 <= steps <= self.plan.num_steps:
            raise ValueError(f'steps to checkpoint must be in [0, {self.plan.num_steps}] for the plan [{self.plan}], '
                             f'got {steps}')
        self.checkpoint_steps = steps

    def checkpointed(self, index: int) -> bool:
        """Whether block ``index`` is recomputed in the backward pass when training."""
        return self.grad_checkpointing or self._step_of[index] < self.checkpoint_steps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x, torch.jit.annotate(List[int], []), False)[0]

    def forward_intermediates(
            self,
            x: torch.Tensor,
            indices: Sequence[int],
            stop_early: bool = False,
    ) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """Run the trunk and also return the full-width state after each block in ``indices``.

        The state after block ``i`` is that block's output concatenated with the chunks not consumed yet,
        so every intermediate has the trunk's ``channels`` (a drop-in for a plain trunk's features).

        Returns:
            (output, intermediates). With ``stop_early`` the output is the full-width state after the last
            requested block.
        """
        return self._run(x, [int(i) for i in indices], stop_early)

    def _run(self, x: torch.Tensor, indices: List[int], stop_early: bool) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        # One loop over the blocks serves eager mode, FX, torch.compile and TorchScript: ``_step_of`` says which
        # step each block belongs to, and the chunks of the steps up to it are concatenated just before it.
        _check_channels(x, self.dim, self.channels, self._plan_str)
        chunks = torch.split(x, self._chunks, dim=self.dim)
        num_chunks = len(self._chunks)
        stop = len(self._step_of)
        if stop_early and len(indices) > 0:
            stop = max(indices) + 1
        out: List[torch.Tensor] = []
        y = chunks[0]
        s = 0
        for i, blk in enumerate(self.children()):
            if i < stop:
                while s < self._step_of[i]:
                    s += 1
                    y = torch.cat([y, chunks[s]], dim=self.dim)
                if not torch.jit.is_scripting() and self.training and self.checkpointed(i):
                    y = checkpoint(blk, y, use_reentrant=False)
                else:
                    y = blk(y)
                if i in indices:
                    out.append(torch.cat([y] + [chunks[j] for j in range(s + 1, num_chunks)], dim=self.dim)
                               if s + 1 < num_chunks else y)
        if stop_early and len(out) > 0:
            return out[-1], out
        while s + 1 < num_chunks:
            s += 1
            y = torch.cat([y, chunks[s]], dim=self.dim)
        return y, out

    def truncate(self, num_blocks: int) -> None:
        """Keep only the first ``num_blocks`` blocks; the output becomes the full-width state after them."""
        plan = self.plan.truncated(num_blocks)
        for i in range(num_blocks, self.plan.num_blocks):
            del self._modules[str(i)]
        self._set_plan(plan)


def set_step_checkpointing(model: nn.Module, steps: int) -> int:
    """Checkpoint the first ``steps`` steps of every :class:`Steps` trunk of ``model`` that has more steps than that.

    The last step of a trunk (its full width) is never checkpointed by this call, so a one-step trunk (a baseline)
    is left alone. Returns the number of trunks changed.
    """
    if steps < 0:
        raise ValueError(f'steps to checkpoint must be >= 0, got {steps}')
    changed = 0
    for m in model.modules():
        if isinstance(m, Steps) and m.plan.num_steps > 1:
            m.set_step_checkpointing(min(steps, m.plan.num_steps - 1))
            changed += 1
    return changed


def checkpoint_stages(stages, x: torch.Tensor) -> torch.Tensor:
    """Run the blocks of ``stages`` (an iterable of block sequences) with activation checkpointing, block by block;
    a :class:`Steps` trunk among them checkpoints its own blocks (its narrow steps are what it saves memory on)."""
    for stage in stages:
        for m in stage:
            x = m(x) if isinstance(m, Steps) else checkpoint(m, x, use_reentrant=False)
    return x
