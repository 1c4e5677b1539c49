"""The fields every task's config shares: how a run executes (device, AMP, compile, resume, the non-finite
policy, logging). Each task's config (:mod:`stepsnet.config.classification`, ``.detection``, ``.segmentation``,
``.lm``) extends :class:`RunConfig`; :mod:`stepsnet.engine` reads it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

__all__ = ['RunConfig']


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
        tensorboard: Also log to TensorBoard when it is installed.
        seed: Seeds the initialisation, the order of the batches and the augmentation (or dropout); 0 unless a
            recipe says otherwise, in every task.
        dry_run: 0 for a run; N > 0: build everything the recipe asks for, train N steps, evaluate one batch, write
            nothing into the run folder and print what was measured and the projected time of the whole recipe
            (:mod:`stepsnet.utils.dryrun`).
        synthetic_data: With ``dry_run``: generate data in the recipe's own on-disk layout and size
            (:mod:`stepsnet.data.layouts`) instead of reading ``data_dir``.
        dry_run_report: With ``dry_run``: also write the report as JSON to this file (outside the run folder).
    """
    device: str = 'auto'
    threads: Optional[int] = None
    amp: bool = False
    amp_dtype: str = 'bfloat16'
    compile: bool = False
    resume: Optional[str] = None
    nan_tolerance: int = 0
    progress: bool = True
    tensorboard: bool = True
    seed: int = 0
    dry_run: int = 0
    synthetic_data: bool = False
    dry_run_report: Optional[str] = None

    # how a command runs, not what a run computes: never recorded in config.json or checkpoints
    DRY_RUN_FIELDS = ('dry_run', 'synthetic_data', 'dry_run_report')
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
        if (self.synthetic_data or self.dry_run_report) and not self.dry_run:
            raise ValueError('synthetic_data and dry_run_report are for dry runs: add --dry-run (a run on generated '
                             'data would report meaningless results)')
