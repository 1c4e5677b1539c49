"""The Steps trunk that replaces a timm model's block sequence in the generic twins
(:mod:`stepsnet.models.generic_twins`): :class:`TimmSteps` runs the plan when called and, iterated, gives per-block
views over the full-width state, so that timm's own loops over ``self.blocks`` (with their keyword arguments: EVA's
rotary tables) compute the Steps recursion; :class:`LeadTimmSteps` keeps a stage's strided or widening first blocks
in front of it."""
import copy
import re
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

from stepsnet.steps import Steps

__all__ = ['TimmSteps', 'LeadTimmSteps']


class _BlockView:
    """Block ``block`` of a step of width ``width``, applied to a full-width state (first ``width`` channels).

    Not a module (it is never registered); attribute access goes to the block, so timm code that walks
    ``self.blocks`` (``layer.attn.proj`` in a rescaling init) reaches the real block.
    """

    def __init__(self, block: nn.Module, width: int, channels: int, dim: int, rope: Optional[nn.Module] = None,
                 grid: Optional[nn.Module] = None):
        self.__dict__.update(block=block, width=width, channels=channels, dim=dim, rope=rope, grid=grid)

    def __call__(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if self.rope is not None and kwargs.get('rope') is not None:
            # the step's own rotary table (its head size is not the model's): at the grid the model's patch
            # embedding gave this input (:func:`_record_grid`)
            grid = list(getattr(self.grid, 'stepsnet_grid', None) or self.grid.grid_size)
            if getattr(self.rope, 'feat_shape', None) is not None and list(self.rope.feat_shape) != grid:
                self.rope.update_feat_shape(grid)
            kwargs['rope'] = self.rope.get_embed(shape=grid)
        if self.width == self.channels:
            return self.block(x, *args, **kwargs)
        head, tail = torch.split(x, [self.width, self.channels - self.width], dim=self.dim)
        return torch.cat([self.block(head, *args, **kwargs), tail], dim=self.dim)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.block, name)

    def __repr__(self) -> str:
        return f'_BlockView({type(self.block).__name__}, width={self.width} of {self.channels})'


class TimmSteps(Steps):
    """A :class:`Steps` trunk that timm's loops over ``self.blocks`` run correctly.

    Calling it runs the plan (split, steps, concat). Iterating it yields one view per block that maps the full-width
    state to the full-width state (the block on its step's leading channels, the rest passed through), so timm's
    ``for blk in self.blocks: x = blk(x, **kw)``, ``checkpoint_seq`` and ``forward_intermediates`` compute the same
    function. Indexing with an int returns the block itself (as :class:`Steps` does); a prefix slice
    (``blocks[:k]``, timm's ``prune_intermediate_layers``) returns a trunk truncated to ``k`` blocks that shares them.
    """

    # per step, a rotary embedding for a head size other than the model's (EVA, :func:`_eva_step_ropes`), and the
    # patch embedding whose grid it is built for; plain attributes (the modules are registered on the model)
    step_ropes: Dict[int, nn.Module] = {}
    rope_grid: Optional[nn.Module] = None

    def _views(self) -> List[_BlockView]:
        widths, ropes = self.plan.block_widths(), self.step_ropes
        return [_BlockView(b, w, self.channels, self.dim, ropes.get(self.plan.step_of(i)), self.rope_grid)
                for i, (b, w) in enumerate(zip(self.children(), widths))]

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        return iter(self._views())

    def __getitem__(self, index: Union[int, slice]) -> Any:
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if start != 0 or step != 1:
                return self._views()[index]
            trunk = copy.copy(self)
            trunk._modules = type(self._modules)(self._modules)
            trunk.truncate(stop)
            return trunk
        return super().__getitem__(index)


class LeadTimmSteps(TimmSteps):
    """A :class:`TimmSteps` trunk behind blocks that stay as they are (:attr:`TrunkFamily.lead`).

    A CNN stage often begins with a strided or widening block; the paper keeps it and converts the blocks after it
    (Steps-ResNet). The container keeps the baseline's child names (``0, 1, ..`` or RegNet's ``b1, b2, ..``: the
    kept blocks first, then the trunk's), so a one-step trunk has the baseline's parameter names. The kept blocks are
    registered after the trunk's blocks, because :class:`Steps` runs its first ``num_blocks`` children, and run
    first here. Iterating yields the kept blocks, then the trunk's views; ``forward_intermediates`` indices count the
    trunk's blocks.

    Args:
        lead: The kept blocks, in order.
        names: Child names of the kept blocks and then the trunk's blocks (:func:`_block_names`).
        trunk: The Steps trunk (its blocks are moved here).
    """

    def __init__(self, lead: Sequence[nn.Module], names: Sequence[str], trunk: TimmSteps):
        blocks = list(trunk.children())
        super().__init__(trunk.plan, lambda width, index: blocks[index], dim=trunk.dim, channels=trunk.channels)
        if len(names) != len(lead) + len(blocks):
            raise ValueError(f'{len(names)} names {list(names)} for {len(lead)} kept and {len(blocks)} trunk blocks; '
                             'expected one name per block')
        self._modules.clear()
        for name, block in list(zip(names[len(lead):], blocks)) + list(zip(names, lead)):
            self.add_module(name, block)
        self.num_lead = len(lead)

    def _lead(self) -> List[nn.Module]:
        return list(self._modules.values())[self.plan.num_blocks:]

    def _views(self) -> List[Any]:
        return [_BlockView(b, self.channels, self.channels, self.dim) for b in self._lead()] + super()._views()

    def __len__(self) -> int:
        return self.num_lead + self.plan.num_blocks

    def __getitem__(self, index: Union[int, slice]) -> Any:
        if isinstance(index, slice):
            return self._views()[index]
        return (self._lead() + list(self._modules.values())[:self.plan.num_blocks])[index]

    def _run(self, x: torch.Tensor, indices: List[int], stop_early: bool) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        for block in self._lead():
            x = block(x)
        return super()._run(x, indices, stop_early)

    def truncate(self, num_blocks: int) -> None:
        """Keep the kept blocks and the trunk's first ``num_blocks`` blocks."""
        plan = self.plan.truncated(num_blocks)
        for name in list(self._modules)[num_blocks:self.plan.num_blocks]:
            del self._modules[name]
        self._set_plan(plan)


def _block_names(names: Sequence[str], count: int) -> List[str]:
    """``count`` child names that continue a container's (``0, 1, ..`` or ``b1, b2, ..``: one prefix, counting up)."""
    parts = [re.fullmatch(r'(\D*)(\d+)', n) for n in names]
    if not parts or not all(parts) or len({p.group(1) for p in parts}) > 1:
        raise ValueError(f'block names {list(names)} are not a prefix and a count; expected 0, 1, .. or b1, b2, ..')
    prefix, start = parts[0].group(1), int(parts[0].group(2))
    if [int(p.group(2)) for p in parts] != list(range(start, start + len(parts))):
        raise ValueError(f'block names {list(names)} do not count up by one; expected 0, 1, .. or b1, b2, ..')
    return [f'{prefix}{start + i}' for i in range(count)]
