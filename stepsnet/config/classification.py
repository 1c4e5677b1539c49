"""The config of an image-classification run (:func:`stepsnet.tasks.classification.train_classification`): the
keys of ``configs/cls/*.yaml`` and the flags of ``stepsnet train-cls``."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from stepsnet.config.run import RunConfig, check_fields, finite
from stepsnet.utils.config import load_dataclass_config
from stepsnet.utils.machine import cap_workers

__all__ = ['ClassificationConfig', 'load_config']


@dataclass
class ClassificationConfig(RunConfig):
    """One classification run. Field names are the YAML keys of ``configs/cls/*.yaml`` and the CLI flags.

    Learning rate: when ``lr`` is None it is ``lr_base * global_batch / lr_base_size`` (timm's / DeiT's rule;
    ``lr_base_scale='sqrt'`` for the square-root rule). The fields every task shares (device, AMP, compile, resume,
    ...) come from :class:`stepsnet.config.RunConfig`.
    """
    # model
    model: str = 'test_steps_resnet'
    num_classes: Optional[int] = None  # None: taken from the dataset
    drop_rate: float = 0.0
    drop_path: Optional[float] = None
    model_kwargs: Dict[str, Any] = field(default_factory=dict)
    initial_checkpoint: Optional[str] = None
    # data
    dataset: str = 'digits'
    data_dir: Optional[str] = None
    train_split: str = 'train'
    val_split: str = 'val'
    img_size: Optional[int] = None  # None: the model's default (32 for digits)
    crop_pct: Optional[float] = None
    interpolation: str = 'bicubic'
    mean: Optional[Tuple[float, ...]] = None
    std: Optional[Tuple[float, ...]] = None
    skip_corrupt: bool = False
    workers: int = 4
    batch_size: int = 128
    eval_batch_size: Optional[int] = None  # None: batch_size
    # augmentation and regularisation
    scale: Tuple[float, float] = (0.08, 1.0)
    ratio: Tuple[float, float] = (3. / 4., 4. / 3.)
    hflip: float = 0.5
    color_jitter: Optional[float] = 0.4
    auto_augment: Optional[str] = 'rand-m9-mstd0.5-inc1'
    reprob: float = 0.25
    remode: str = 'pixel'
    recount: int = 1
    aug_repeats: int = 0
    mixup: float = 0.8
    cutmix: float = 1.0
    mixup_prob: float = 1.0
    mixup_switch_prob: float = 0.5
    mixup_mode: str = 'batch'
    smoothing: float = 0.1
    bce_loss: bool = False
    bce_target_thresh: Optional[float] = None
    # optimisation
    epochs: int = 300
    opt: str = 'adamw'
    lr: Optional[float] = None
    lr_base: float = 5e-4
    lr_base_size: int = 512
    lr_base_scale: str = 'linear'
    weight_decay: float = 0.05
    momentum: float = 0.9
    opt_eps: Optional[float] = None
    opt_betas: Optional[Tuple[float, ...]] = None
    layer_decay: Optional[float] = None
    clip_grad: Optional[float] = None
    clip_mode: str = 'norm'
    sched: str = 'cosine'
    warmup_epochs: float = 5
    warmup_lr: float = 1e-6
    min_lr: float = 1e-5
    cooldown_epochs: int = 0
    # EMA
    model_ema: bool = False
    model_ema_decay: float = 0.9998
    model_ema_warmup: bool = False
    # performance
    channels_last: bool = False
    grad_checkpointing: bool = False
    # run control
    out_dir: str = 'runs/cls'
    max_train_batches: Optional[int] = None  # cap per epoch (smoke tests)

    MUTABLE = RunConfig.MUTABLE + ('data_dir', 'out_dir', 'epochs', 'workers', 'eval_batch_size', 'skip_corrupt')
    RENAMED = {**RunConfig.RENAMED, 'val_batch_size': 'eval_batch_size'}

    def __post_init__(self):
        super().__post_init__()
        for name in ('scale', 'ratio', 'mean', 'std', 'opt_betas'):
            v = getattr(self, name)
            if v is not None and not isinstance(v, tuple):
                setattr(self, name, tuple(float(x) for x in v))
        for name in ('epochs', 'batch_size'):
            if getattr(self, name) < 1:
                raise ValueError(f'{name} must be >= 1, got {getattr(self, name)}')
        for name in ('eval_batch_size', 'img_size', 'num_classes', 'max_train_batches'):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ValueError(f'{name} must be >= 1 (or unset), got {v}')
        for name in ('workers', 'aug_repeats'):
            if getattr(self, name) < 0:
                raise ValueError(f'{name} must be >= 0, got {getattr(self, name)}')
        for name in ('scale', 'ratio'):
            v = getattr(self, name)
            if len(v) != 2 or v[0] <= 0 or v[0] > v[1]:
                raise ValueError(f'{name} must be two numbers 0 < low <= high, got {v}')
        if self.lr_base_scale not in ('linear', 'sqrt'):
            raise ValueError(f"lr_base_scale must be 'linear' or 'sqrt', got {self.lr_base_scale!r}")
        check_fields(self, ('lr', 'lr_base', 'opt_eps'), finite(lambda v: v > 0), '> 0')
        check_fields(self, ('lr_base_size',), lambda v: v >= 1, '>= 1')
        check_fields(self, ('weight_decay', 'momentum', 'warmup_epochs', 'warmup_lr', 'min_lr', 'cooldown_epochs',
                            'clip_grad', 'color_jitter', 'mixup', 'cutmix'), finite(lambda v: v >= 0),
                     '>= 0 (0: none)')
        check_fields(self, ('recount',), lambda v: v >= 1, '>= 1')
        check_fields(self, ('hflip', 'reprob', 'mixup_prob', 'mixup_switch_prob', 'bce_target_thresh'),
                     lambda v: 0 <= v <= 1, 'a probability in [0, 1]')
        check_fields(self, ('drop_rate', 'drop_path', 'smoothing'), lambda v: 0 <= v < 1, 'in [0, 1)')
        check_fields(self, ('crop_pct',), lambda v: 0 < v <= 1, 'in (0, 1] (a share of the image)')
        check_fields(self, ('layer_decay',), lambda v: 0 < v <= 1, 'in (0, 1] (the decay per layer)')
        check_fields(self, ('model_ema_decay',), lambda v: 0 <= v < 1, 'in [0, 1)')
        if self.std is not None and any(not v > 0 for v in self.std):
            raise ValueError(f'std must be positive numbers (one per channel), got {list(self.std)}')
        if self.opt_betas is not None and not all(0 <= b < 1 for b in self.opt_betas):
            raise ValueError(f'opt_betas must be numbers in [0, 1), got {list(self.opt_betas)}')
        self.workers, self.workers_note = cap_workers(self.workers)

    def check_schedule(self) -> List[str]:
        """A warm-up of ``warmup_epochs`` must end before the ``epochs`` of the run do."""
        return self._check_warmup(self.warmup_epochs, 'warmup_epochs', self.epochs, 'epochs')


def load_config(path: Optional[str] = None, **overrides: Any) -> ClassificationConfig:
    """A :class:`ClassificationConfig` from a YAML recipe plus non-None overrides (a recipe's ``source`` is
    informational).

    Raises:
        FileNotFoundError: The recipe does not exist.
        ValueError: A key is not a field (or a renamed one), or a value is out of range.
    """
    return load_dataclass_config(ClassificationConfig, path, overrides)
