"""How a task enters a comparison (:class:`TaskAdapter`). Each task that has one defines it in its own module of
this package (``task_cls``, ``task_lm``) and names it in its row of :data:`stepsnet.utils.tasks.TASKS`
(``compare``); :data:`stepsnet.compare.harness.ADAPTERS` reads them from there."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, Mapping, Optional

__all__ = ['TaskAdapter']


def validation_split(config: Mapping[str, Any]) -> str:
    """How a report names the split a run is evaluated on, by default."""
    return 'the validation split'


@dataclass(frozen=True)
class TaskAdapter:
    """One task as the harness sees it.

    Attributes:
        metric: The compared metric, as tables name it.
        higher_is_better: Its direction.
        seen: What the curves' x axis counts.
        digits: Decimals of the tables.
        recipe: The default recipe, relative to ``configs/``.
        load_config: The task's config loader (path, **overrides).
        run: Trains one run from its config; returns what the harness adds to the engine's results: at least
            ``curve``, ``macs``, ``blocks``, ``layers`` and ``plan``.
        check: Builds the run's model on the meta device: raises on a bad setting before anything trains.
        train: The task's own training function (what ``run`` calls; a dry run calls it alone).
        kind: The checkpoint kind of the task's runs (the ``kind`` of their ``results.json``).
        final: The key of the compared metric in the final evaluation (``final`` of ``results.json``).
        train_metric: Name of the metric measured again on the training images (``train_metric`` in a run's
            result), or None.
        held_out: How the report names the split the compared metric is measured on, from a run's config (as
            ``results.json`` stores it), e.g. "the standard MNIST-1D test split (1,000 signals)".
    """
    metric: str
    higher_is_better: bool
    seen: str
    digits: int
    recipe: str
    load_config: Callable[..., Any]
    run: Callable[[Any], Dict[str, Any]]
    check: Callable[[Any], None]
    train: Callable[[Any], Dict[str, Any]]
    kind: str
    final: str
    train_metric: Optional[str] = None
    held_out: Callable[[Mapping[str, Any]], str] = validation_split
