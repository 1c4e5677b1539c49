"""The fields every task's config shares: how a run executes (device, AMP, compile, resume, the non-finite
policy, logging). Each task's config (:mod:`stepsnet.config.classification`, ``.detection``, ``.segmentation``,
``.lm``) extends :class:`RunConfig`; :mod:`stepsnet.engine` reads it."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Optional

from stepsnet.utils.machine import installed

__all__ = ['RunConfig', 'check_fields']


def check_fields(cfg: Any, names: Iterable[str], ok: Callable[[float], bool], expected: str) -> None:
    """Refuse the first field of ``names`` whose value (when set) fails ``ok``, in one line naming the field, what
    it must be and its value (NaN fails every comparison, so it is refused too).

    Raises:
        ValueError: ``'lr must be > 0, got -0.1'``.
    """
    for name in names:
        value = getattr(cfg, name)
        if value is not None and not ok(value):
            raise ValueError(f'{name} must be {expected}, got {value}')


def finite(ok: Callable[[float], bool]) -> Callable[[float], bool]:
    """``ok`` for a finite number only (an infinite rate or decay is never meant)."""
    return lambda v: math.isfinite(v) and ok(v)


@dataclass
class RunConfig:
    """How a run executes, the same for every task (each task's config extends it).

    Attributes:
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N``.
        threads: torch CPU threads per process (None: torch's choice).
        amp: Autocast (use on GPUs).
        amp_dtype: ``bfloat16`` or ``float16`` (float16 on CUDA adds a gradient scaler).
        compile: ``torch.compile`` the model.
        resume: None (a folder holding a run is refused), ``auto`` (continue ``out_dir/last.pth`` when there),
            ``last`` (the same, the folder must exist: the CLI's ``--resume``) or a checkpoint path.
        nan_tolerance: Non-finite losses skipped before the run stops (0: stop at the first).
        progress: Show a progress bar (on a terminal only; elsewhere plain log lines).
        tensorboard: None (the default): also log to TensorBoard when it is installed; True: TensorBoard logs are
            required (refused when the ``tensorboard`` package is missing); False: the CSV log only.
        seed: Seeds the initialisation, the order of the batches and the augmentation (or dropout); 0 unless a
            recipe says otherwise, in every task.
        dry_run: 0 for a run; N > 0: build everything the recipe asks for, train N steps, evaluate one batch, write
            nothing into the run folder and print what was measured and the projected time of the whole recipe
            (:mod:`stepsnet.utils.dryrun`).
        synthetic_data: With ``dry_run``: generate data in the recipe's own on-disk layout and size
            (:mod:`stepsnet.data.layouts`) instead of reading ``data_dir``.
        dry_run_report: With ``dry_run``: also write the report as JSON to this file (outside the run folder).
        dry_run_recipe: With ``dry_run``: the recipe's own values of the fields the command line changed (set by
            the CLI), so that the report's A100-hour floor is the recipe's, not that of the cut batch it ran.
    """
    device: str = 'auto'
    threads: Optional[int] = None
    amp: bool = False
    amp_dtype: str = 'bfloat16'
    compile: bool = False
    resume: Optional[str] = None
    nan_tolerance: int = 0
    progress: bool = True
    tensorboard: Optional[bool] = None
    seed: int = 0
    dry_run: int = 0
    synthetic_data: bool = False
    dry_run_report: Optional[str] = None
    dry_run_recipe: Optional[Dict[str, Any]] = None

    # how a command runs, not what a run computes: never recorded in config.json or checkpoints
    DRY_RUN_FIELDS = ('dry_run', 'synthetic_data', 'dry_run_report', 'dry_run_recipe')
    # fields the command line sets itself, never a flag of their own
    NOT_FLAGS = ('dry_run_recipe',)
    # fields a resumed run may change (recorded in config.json); every other field must match the stored run
    MUTABLE = ('device', 'threads', 'compile', 'resume', 'nan_tolerance', 'progress', 'tensorboard')
    # names of earlier releases, refused with the new name
    RENAMED = {'output': 'out_dir', 'grad_clip': 'clip_grad', 'optimizer': 'opt', 'model_args': 'model_kwargs',
               'dtype': 'amp and amp_dtype'}

    def __post_init__(self):
        if self.amp_dtype not in ('bfloat16', 'float16'):
            raise ValueError(f"amp_dtype must be 'bfloat16' or 'float16', got {self.amp_dtype!r}")
        if self.nan_tolerance < 0:
            raise ValueError(f'nan_tolerance must be >= 0, got {self.nan_tolerance}')
        if self.threads is not None and self.threads < 1:
            raise ValueError(f'threads must be >= 1 (or unset), got {self.threads}')
        if self.dry_run < 0:
            raise ValueError(f'dry_run must be >= 0 (0: a real run; N: N steps), got {self.dry_run}')
        if (self.synthetic_data or self.dry_run_report or self.dry_run_recipe) and not self.dry_run:
            raise ValueError('synthetic_data and dry_run_report are for dry runs: add --dry-run (a run on generated '
                             'data would report meaningless results)')
        if self.tensorboard and not installed('tensorboard'):
            # asked for by name (a default of None logs to TensorBoard only when it is there): a run that would
            # write no TensorBoard logs is refused at once, not discovered after training
            raise ValueError('tensorboard is asked for, but the tensorboard package is not installed: pip install '
                             'tensorboard (or pip install "stepsnet[tensorboard]"), or drop --tensorboard; the CSV log '
                             '(log.csv) is written either way')

    def check_schedule(self) -> List[str]:
        """What makes no sense in the run's schedule as a whole (a warm-up as long as the run), as warnings: the run
        still trains (a one-epoch try of a recipe is a reasonable thing to ask for), but the user is told.

        Called where a run is asked for (the training commands and ``stepsnet compare``), not on every copy of a
        config: the comparison harness shortens copies of a recipe for its timing probes before it shortens their
        warm-up.
        """
        return []

    @staticmethod
    def _check_warmup(warmup: float, name: str, length: Optional[float], length_name: str) -> List[str]:
        if length is not None and length > 0 and warmup > 0 and warmup >= length:
            flag = '--' + name.replace('_', '-')
            return [f'{name} ({warmup:g}) is not less than {length_name} ({length:g}): the learning-rate warm-up '
                    f'covers the whole run, so the rate never reaches its peak; {flag} 0 turns the warm-up off']
        return []
