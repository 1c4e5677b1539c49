"""Image classification in a comparison: its :class:`~stepsnet.compare.adapter.TaskAdapter` (named by the task's
row of :data:`stepsnet.utils.tasks.TASKS`)."""
from __future__ import annotations

import os
from typing import Any, Dict, Mapping

from stepsnet.analysis.complexity import count_blocks, count_layers, count_macs
from stepsnet.compare.adapter import TaskAdapter
from stepsnet.data.images import held_out_split
from stepsnet.models.factory import CLS_KIND, create_classifier
from stepsnet.tasks import classification as cls_task

__all__ = ['ADAPTER']


def _describe_classifier(cfg: cls_task.ClassificationConfig, num_classes: int = 10) -> Dict[str, Any]:
    img = cls_task.data_config(cfg)['input_size']
    net = create_classifier(cfg.model, num_classes, img[-1], **cfg.model_kwargs)
    plan = [str(m.plan) for m in net.modules() if hasattr(m, 'plan') and hasattr(m, 'truncate')]
    return dict(macs=count_macs(net, img), blocks=count_blocks(net), layers=count_layers(net),
                plan='; '.join(plan))


def _run_cls(cfg: cls_task.ClassificationConfig) -> Dict[str, Any]:
    s = cls_task.train_classification(cfg)
    curve = [(h['images_seen'], h['val_top1']) for h in s['history']]
    # the final weights on the training images, without augmentation (the paper's Fig. 1 shows both)
    train = cls_task.validate_classification(
        os.path.join(cfg.out_dir, 'last.pth'), dataset=cfg.dataset, data_dir=cfg.data_dir, split=cfg.train_split,
        batch_size=256, workers=0, device=cfg.device, progress=False)
    return dict(train_metric=train['top1'], train_loss=s['final_train_loss'], curve=curve,
                **_describe_classifier(cfg))


def _check_cls(cfg: cls_task.ClassificationConfig) -> None:
    create_classifier(cfg.model, 10, cls_task.data_config(cfg)['input_size'][-1], **cfg.model_kwargs)


def _held_out(config: Mapping[str, Any]) -> str:
    """The evaluated split as a report names it (:func:`stepsnet.data.images.held_out_split`)."""
    return held_out_split(config.get('dataset'), config.get('val_split', 'val'))[1]


ADAPTER = TaskAdapter('val top-1 (%)', True, 'images seen', 2, os.path.join('cls', 'digits_cpu.yaml'),
                      cls_task.load_config, _run_cls, _check_cls, cls_task.train_classification, CLS_KIND, 'top1',
                      'train top-1 (no augmentation)', _held_out)
