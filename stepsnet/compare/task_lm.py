"""Language modelling in a comparison: its :class:`~stepsnet.compare.adapter.TaskAdapter` (named by the task's
row of :data:`stepsnet.utils.tasks.TASKS`)."""
from __future__ import annotations

import os
from typing import Any, Dict

from stepsnet.compare.adapter import TaskAdapter
from stepsnet.models.factory import LM_KIND, lm_config
from stepsnet.tasks import lm as lm_task

__all__ = ['ADAPTER']


def _run_lm(cfg: lm_task.LMConfig) -> Dict[str, Any]:
    s = lm_task.train_lm(cfg)
    curve = [(h['tokens_seen'], h['val_loss']) for h in s['history'] if 'val_loss' in h]
    return dict(tokens_per_s=s['tokens_per_s'], curve=curve, macs=s['flops_per_token'], blocks=s['blocks'],
                layers=5 * s['blocks'], plan=s['plan'])


def _check_lm(cfg: lm_task.LMConfig) -> None:
    model = lm_config(cfg.model, **cfg.model_kwargs)
    model.plan()
    if cfg.block_size and cfg.block_size > model.block_size:
        raise ValueError(f'training context block_size={cfg.block_size} is longer than the model '
                         f'{cfg.model!r} context {model.block_size}; expected at most {model.block_size}')


ADAPTER = TaskAdapter('val loss (nats/token)', False, 'tokens seen', 4, os.path.join('lm', 'cpu.yaml'),
                      lm_task.load_config, _run_lm, _check_lm, lm_task.train_lm, LM_KIND, 'loss')
