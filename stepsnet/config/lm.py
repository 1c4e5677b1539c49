"""The config of a language-model run (:func:`stepsnet.tasks.lm.train_lm`): the keys of ``configs/lm/*.yaml``
and the flags of ``stepsnet train-lm``."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from stepsnet.config.run import RunConfig, check_fields, finite
from stepsnet.utils.config import load_dataclass_config

__all__ = ['LMConfig', 'load_config', 'DEFAULT_DATA_DIR']

# where ``stepsnet data prepare-text`` writes the embedded corpus, and where a run reads it unless told otherwise
DEFAULT_DATA_DIR = os.path.join('runs', 'data', 'stdlib-byte')


@dataclass
class LMConfig(RunConfig):
    """One language-model training run (the keys of ``configs/lm/*.yaml`` and the ``train-lm`` flags), with the
    fields every task shares from :class:`stepsnet.config.RunConfig` (device, AMP, compile, resume, ...).

    Attributes:
        data_dir: Folder written by ``stepsnet data prepare-text``.
        out_dir: The run folder: ``last.pth``, ``best.pth``, ``log.csv``, ``config.json`` (and ``tb/``).
        model: Named model (``gpt_small``, ``steps_gpt_cpu``, ...; see ``stepsnet.models.steps_gpt.LM_CONFIGS``) or
            a Llama-style one (``llama_cpu``, ``steps_llama_small``, ...; ``stepsnet.models.steps_llama``).
        model_kwargs: Overrides of the model's config (:class:`GPTConfig`, e.g. ``{'dropout': 0.1, 'n_layer': 16}``;
            ``StepsLlamaConfig``, e.g. ``{'num_hidden_layers': 8}``); ``vocab_size`` defaults to the data's.
        block_size: Training context; None uses the model's (it may not exceed it).
        batch_size: Sequences per micro-batch per process.
        grad_accum: Micro-batches per optimizer step.
        max_iters: Optimizer steps.
        lr: Peak learning rate.
        min_lr: Final learning rate of the cosine (None: ``lr / 10``).
        warmup_iters: Linear warm-up steps (from ``lr / (warmup_iters + 1)``).
        weight_decay: AdamW decay on matrices (vectors never decay).
        opt_betas: AdamW (beta1, beta2).
        clip_grad: Global gradient-norm clip (None or 0 disables).
        eval_interval: Evaluate every this many steps.
        eval_iters: Validation batches per evaluation.
        final_eval_windows: Non-overlapping validation windows scored at the end (0 skips the final evaluation).
        log_interval: Log the training loss every this many steps.
        checkpoint_interval: Checkpoint every this many steps (None: ``eval_interval``); always at the end.
        time_limit: Stop after this many seconds of training (evaluation excluded); None: no limit.
        peak_flops: Peak FLOP/s of one device for MFU; None looks the GPU up in :data:`PEAK_FLOPS`.
        fused_attn: Use the fused attention kernel (False: the explicit path).
    """
    data_dir: str = DEFAULT_DATA_DIR
    out_dir: str = os.path.join('runs', 'lm')
    model: str = 'gpt_cpu'
    model_kwargs: Dict[str, Any] = field(default_factory=dict)
    block_size: Optional[int] = None
    batch_size: int = 32
    grad_accum: int = 1
    max_iters: int = 2000
    lr: float = 2e-3
    min_lr: Optional[float] = None
    warmup_iters: int = 100
    weight_decay: float = 0.1
    opt_betas: Tuple[float, float] = (0.9, 0.95)
    clip_grad: Optional[float] = 1.0
    eval_interval: int = 250
    eval_iters: int = 20
    final_eval_windows: int = 1024
    log_interval: int = 10
    checkpoint_interval: Optional[int] = None
    time_limit: Optional[float] = None
    peak_flops: Optional[float] = None
    fused_attn: bool = True

    RENAMED = {**RunConfig.RENAMED, 'beta1': 'opt_betas[0]', 'beta2': 'opt_betas[1]'}
    MUTABLE = RunConfig.MUTABLE + (
        'data_dir', 'out_dir', 'max_iters', 'eval_interval', 'eval_iters', 'final_eval_windows', 'log_interval',
        'checkpoint_interval', 'time_limit', 'peak_flops')

    def __post_init__(self):
        super().__post_init__()
        for name in ('batch_size', 'grad_accum', 'eval_interval', 'eval_iters', 'log_interval'):
            if int(getattr(self, name)) < 1:
                raise ValueError(f'{name} must be >= 1, got {getattr(self, name)}')
        for name in ('max_iters', 'warmup_iters', 'final_eval_windows'):
            if int(getattr(self, name)) < 0:
                raise ValueError(f'{name} must be >= 0, got {getattr(self, name)}')
        if self.checkpoint_interval is not None and self.checkpoint_interval < 1:
            raise ValueError(f'checkpoint_interval must be >= 1, got {self.checkpoint_interval}')
        if self.block_size is not None and self.block_size < 1:
            raise ValueError(f'block_size must be >= 1, got {self.block_size}')
        check_fields(self, ('lr', 'peak_flops'), finite(lambda v: v > 0), '> 0')
        check_fields(self, ('min_lr', 'weight_decay', 'clip_grad'), finite(lambda v: v >= 0), '>= 0 (0: none)')
        self.opt_betas = tuple(float(b) for b in self.opt_betas)
        if len(self.opt_betas) != 2 or not all(0 <= b < 1 for b in self.opt_betas):
            raise ValueError(f'opt_betas must be two numbers in [0, 1), got {list(self.opt_betas)}')
        if self.time_limit is not None and self.time_limit <= 0:
            raise ValueError(f'time_limit must be > 0 seconds, got {self.time_limit}')

    def check_schedule(self) -> List[str]:
        """A warm-up of ``warmup_iters`` steps must end before the ``max_iters`` of the run do."""
        return self._check_warmup(self.warmup_iters, 'warmup_iters', self.max_iters, 'max_iters')


def load_config(path: Optional[str] = None, **overrides: Any) -> LMConfig:
    """An :class:`LMConfig` from a YAML file (its keys are the fields) plus non-None overrides."""
    return load_dataclass_config(LMConfig, path, overrides)
