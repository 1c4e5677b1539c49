"""The config of a detection run (:func:`stepsnet.tasks.detection.train_detection`): the keys of
``configs/det/*.yaml`` and the flags of ``stepsnet train-det``."""
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from stepsnet.config.run import RunConfig, check_fields, finite
from stepsnet.utils.config import load_dataclass_config
from stepsnet.utils.machine import cap_workers
from stepsnet.utils.names import DETECTOR_ARCHS

__all__ = ['DetectionConfig', 'load_config']


@dataclass
class DetectionConfig(RunConfig):
    """Options of :func:`train_detection` (the keys of a ``configs/det/*.yaml`` file).

    The fields every task shares (device, AMP, compile, resume, ...) come from :class:`stepsnet.config.RunConfig`.
    """
    # data: <data_dir>/<split>/ images, <data_dir>/annotations/instances_<split>.json
    data_dir: str = 'runs/data/synth-coco'
    train_split: str = 'train2017'
    val_split: str = 'val2017'
    out_dir: str = 'runs/det'
    # model
    backbone: str = 'steps_resnet50'
    backbone_weights: Optional[str] = None
    model_kwargs: Dict[str, Any] = field(default_factory=dict)
    arch: str = 'mask_rcnn'
    min_size: int = 800
    max_size: int = 1333
    fpn_channels: int = 256
    box_head_dim: int = 1024
    mask_head_channels: int = 256
    anchor_sizes: Optional[List[int]] = None
    rpn_batch_size_per_image: int = 256
    box_batch_size_per_image: int = 512
    detector_kwargs: Dict[str, Any] = field(default_factory=dict)  # more torchvision detector options
    # schedule: per-process batch; lr for the total batch (batch_size x world size)
    epochs: int = 12
    max_iters: Optional[int] = None
    batch_size: int = 2
    # a training batch holds images of one orientation (landscape / portrait), as mmdetection's aspect-ratio
    # grouping: its images pad to a smaller common size (stepsnet.data.sampler.epoch_batches). On in the paper
    # recipes; off by default, so that a run started before the option resumes on the batches it began with
    aspect_grouping: bool = False
    workers: int = 2
    opt: str = 'adamw'
    lr: float = 1e-4
    weight_decay: float = 0.05
    momentum: float = 0.9
    lr_steps: List[int] = field(default_factory=lambda: [8, 11])
    lr_gamma: float = 0.1
    warmup_iters: int = 1000
    warmup_factor: float = 0.001
    clip_grad: Optional[float] = None
    # bookkeeping: evaluation and checkpoints at epoch ends (log_interval counts steps)
    eval_every_epochs: int = 1
    eval_batch_size: int = 1
    log_interval: int = 20

    MUTABLE = RunConfig.MUTABLE + (
        'data_dir', 'out_dir', 'epochs', 'max_iters', 'eval_every_epochs', 'eval_batch_size', 'log_interval',
        'workers')
    # ``eval_interval`` counts steps in every other task; here it counted epochs, so it is refused, not read
    RENAMED = {**RunConfig.RENAMED,
               'eval_interval': 'eval_every_epochs (it counts epochs: eval_interval counts steps in the other tasks)'}

    def __post_init__(self):
        super().__post_init__()
        if self.arch not in DETECTOR_ARCHS:
            raise ValueError(f'unknown detector {self.arch!r}; expected one of {DETECTOR_ARCHS}')
        for name in ('epochs', 'batch_size', 'eval_batch_size', 'log_interval', 'min_size', 'max_size',
                     'fpn_channels'):
            if getattr(self, name) < 1:
                raise ValueError(f'{name} must be >= 1, got {getattr(self, name)}')
        for name in ('workers', 'warmup_iters', 'eval_every_epochs'):
            if getattr(self, name) < 0:
                raise ValueError(f'{name} must be >= 0, got {getattr(self, name)}')
        if self.max_iters is not None and self.max_iters < 1:
            raise ValueError(f'max_iters must be >= 1 (or unset), got {self.max_iters}')
        check_fields(self, ('lr',), finite(lambda v: v > 0), '> 0')
        check_fields(self, ('box_head_dim', 'mask_head_channels', 'rpn_batch_size_per_image',
                            'box_batch_size_per_image'), lambda v: v >= 1, '>= 1')
        check_fields(self, ('weight_decay', 'momentum', 'clip_grad'), finite(lambda v: v >= 0), '>= 0 (0: none)')
        check_fields(self, ('lr_gamma', 'warmup_factor'), lambda v: 0 < v <= 1, 'in (0, 1] (a factor of lr)')
        if list(self.lr_steps) != sorted(self.lr_steps) or any(s < 1 for s in self.lr_steps):
            raise ValueError(f'lr_steps must be increasing epochs >= 1, got {self.lr_steps}')
        if self.anchor_sizes is not None and any(s < 1 for s in self.anchor_sizes):
            raise ValueError(f'anchor_sizes must be pixel sizes >= 1, got {self.anchor_sizes}')
        self.workers, self.workers_note = cap_workers(self.workers)

    def check_schedule(self) -> List[str]:
        """A warm-up of ``warmup_iters`` steps must end before ``max_iters`` (when the run is capped in steps; a run
        of ``epochs`` has a length in steps only once its data is loaded)."""
        return self._check_warmup(self.warmup_iters, 'warmup_iters', self.max_iters, 'max_iters')

    def model_args(self, num_classes: int) -> Dict[str, Any]:
        """The :func:`stepsnet.models.factory.create_detector` arguments of this run."""
        sampling = {} if self.arch == 'retinanet' else dict(
            rpn_batch_size_per_image=self.rpn_batch_size_per_image,
            box_batch_size_per_image=self.box_batch_size_per_image)
        return dict(backbone=self.backbone, num_classes=num_classes, arch=self.arch, min_size=self.min_size,
                    max_size=self.max_size, fpn_channels=self.fpn_channels, box_head_dim=self.box_head_dim,
                    mask_head_channels=self.mask_head_channels, anchor_sizes=self.anchor_sizes,
                    backbone_weights=self.backbone_weights, model_kwargs=dict(self.model_kwargs),
                    **sampling, **self.detector_kwargs)


def load_config(path: Optional[str] = None, **overrides: Any) -> DetectionConfig:
    """A :class:`DetectionConfig` from a YAML file (keys are its fields) plus non-None overrides."""
    return load_dataclass_config(DetectionConfig, path, overrides)
