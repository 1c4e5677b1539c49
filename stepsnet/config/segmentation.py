"""The config of a segmentation run (:func:`stepsnet.tasks.segmentation.train_segmentation`): the keys of
``configs/seg/*.yaml`` and the flags of ``stepsnet train-seg``."""
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from stepsnet.config.run import RunConfig, check_fields, finite
from stepsnet.utils.config import load_dataclass_config
from stepsnet.utils.machine import cap_workers
from stepsnet.utils.names import SEG_EVAL_MODES as EVAL_MODES

__all__ = ['SegmentationConfig', 'load_config']


@dataclass
class SegmentationConfig(RunConfig):
    """Options of :func:`train_segmentation` (the keys of a ``configs/seg/*.yaml`` file).

    The fields every task shares (device, AMP, compile, resume, ...) come from :class:`stepsnet.config.RunConfig`.
    """
    # data: <data_dir>/images/<split>/, <data_dir>/annotations/<split>/
    data_dir: str = 'runs/data/synth-ade'
    train_split: str = 'training'
    val_split: str = 'validation'
    num_classes: int = 150
    reduce_zero_label: bool = True
    out_dir: str = 'runs/seg'
    # model
    backbone: str = 'steps_resnet50'
    backbone_weights: Optional[str] = None
    model_kwargs: Dict[str, Any] = field(default_factory=dict)
    channels: int = 512
    aux_channels: int = 256
    aux_weight: float = 0.4
    pool_scales: List[int] = field(default_factory=lambda: [1, 2, 3, 6])
    dropout: float = 0.1
    # augmentation (height, width) / (long, short)
    crop_size: List[int] = field(default_factory=lambda: [512, 512])
    scale: List[int] = field(default_factory=lambda: [2048, 512])
    ratio_range: List[float] = field(default_factory=lambda: [0.5, 2.0])
    # schedule: per-process batch
    max_iters: int = 160000
    batch_size: int = 2
    workers: int = 4
    opt: str = 'adamw'
    lr: float = 6e-5
    weight_decay: float = 0.01
    momentum: float = 0.9
    power: float = 1.0
    min_lr: float = 0.0
    warmup_iters: int = 1500
    warmup_factor: float = 1e-6
    clip_grad: Optional[float] = None
    # evaluation
    eval_interval: int = 16000
    eval_mode: str = 'whole'
    eval_stride: List[int] = field(default_factory=lambda: [341, 341])
    test_scale: Optional[List[int]] = field(default_factory=lambda: [2048, 512])
    # bookkeeping
    checkpoint_interval: int = 16000
    log_interval: int = 50

    MUTABLE = RunConfig.MUTABLE + (
        'data_dir', 'out_dir', 'max_iters', 'eval_interval', 'eval_mode', 'eval_stride', 'test_scale',
        'checkpoint_interval', 'log_interval', 'workers')
    RENAMED = {**RunConfig.RENAMED, 'iters': 'max_iters', 'warmup_ratio': 'warmup_factor'}

    def __post_init__(self):
        super().__post_init__()
        if self.eval_mode not in EVAL_MODES:
            raise ValueError(f'unknown eval_mode {self.eval_mode!r}; expected one of {EVAL_MODES}')
        for name in ('max_iters', 'batch_size', 'num_classes', 'log_interval', 'channels'):
            if getattr(self, name) < 1:
                raise ValueError(f'{name} must be >= 1, got {getattr(self, name)}')
        for name in ('workers', 'warmup_iters', 'eval_interval', 'checkpoint_interval'):
            if getattr(self, name) < 0:
                raise ValueError(f'{name} must be >= 0, got {getattr(self, name)}')
        for name in ('crop_size', 'scale', 'eval_stride') + (('test_scale',) if self.test_scale else ()):
            v = getattr(self, name)
            if len(v) != 2 or any(int(x) < 1 for x in v):
                raise ValueError(f'{name} must be two positive integers, got {v}')
        if len(self.ratio_range) != 2 or not 0 < self.ratio_range[0] <= self.ratio_range[1]:
            raise ValueError(f'ratio_range must be two numbers 0 < low <= high, got {self.ratio_range}')
        check_fields(self, ('lr', 'power'), finite(lambda v: v > 0), '> 0')
        check_fields(self, ('aux_channels',), lambda v: v >= 1, '>= 1')
        check_fields(self, ('weight_decay', 'momentum', 'min_lr', 'clip_grad', 'aux_weight'),
                     finite(lambda v: v >= 0), '>= 0 (0: none)')
        check_fields(self, ('warmup_factor',), lambda v: 0 < v <= 1, 'in (0, 1] (a factor of lr)')
        check_fields(self, ('dropout',), lambda v: 0 <= v < 1, 'in [0, 1)')
        if any(s < 1 for s in self.pool_scales):
            raise ValueError(f'pool_scales must be grid sizes >= 1, got {self.pool_scales}')
        self.workers, self.workers_note = cap_workers(self.workers)

    def check_schedule(self) -> List[str]:
        """A warm-up of ``warmup_iters`` steps must end before the ``max_iters`` of the run do."""
        return self._check_warmup(self.warmup_iters, 'warmup_iters', self.max_iters, 'max_iters')

    def model_args(self) -> Dict[str, Any]:
        """The :func:`stepsnet.models.factory.create_segmenter` arguments of this run."""
        return dict(backbone=self.backbone, num_classes=self.num_classes, channels=self.channels,
                    aux_channels=self.aux_channels, aux_head=self.aux_weight > 0, pool_scales=list(self.pool_scales),
                    dropout=self.dropout, backbone_weights=self.backbone_weights, model_kwargs=dict(self.model_kwargs))


def load_config(path: Optional[str] = None, **overrides: Any) -> SegmentationConfig:
    """A :class:`SegmentationConfig` from a YAML file (keys are its fields) plus non-None overrides."""
    return load_dataclass_config(SegmentationConfig, path, overrides)
