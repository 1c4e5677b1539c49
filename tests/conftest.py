import os

import pytest


@pytest.fixture(scope='session', autouse=True)
def one_thread_per_test_process():
    """Under pytest-xdist (``make test`` runs one test process per core) each process computes on one thread, so
    the processes do not compete for the cores; a plain ``pytest`` keeps torch's default."""
    if not os.environ.get('PYTEST_XDIST_WORKER'):
        yield
        return
    import torch
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope='session')
def model_table():
    """`stepsnet models` rows for every registered Steps model and its baseline, measured once per session."""
    from stepsnet.analysis.complexity import complexity_table
    return complexity_table()


@pytest.fixture
def one_thread():
    """Run a test on one thread: tiny models are faster that way, most of all on a shared, busy machine."""
    import torch
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny_input_size(name):
    """Square input size a tiny ``test_steps_*`` model is built for (its default config)."""
    import timm
    return timm.get_pretrained_cfg(name).input_size[-1]


def create_tiny(name, **kwargs):
    """A tiny ``test_steps_*`` model with 5 classes whose every parameter gets a gradient.

    ResNet's zero-initialised last BatchNorm and ConvNeXt's 1e-6 layer scale would zero the gradients of the
    layers before them at initialisation; the tiny variants switch them off here.
    """
    import timm
    kwargs.setdefault('num_classes', 5)
    if 'resnet' in name:
        kwargs.setdefault('zero_init_last', False)
    if 'convnext' in name:
        kwargs.setdefault('ls_init_value', 1.0)
    return timm.create_model(name, **kwargs)


def drop_path_rates(model):
    """Stochastic-depth rate of every residual block, in execution order (0 where a block has none)."""
    from stepsnet.analysis.complexity import BLOCK_TYPES
    rates = []
    for m in model.modules():
        if isinstance(m, tuple(BLOCK_TYPES)):
            drop = getattr(m, 'drop_path', None) or getattr(m, 'drop_path1', None)
            rates.append(float(getattr(drop, 'drop_prob', 0.)))
    return rates


def ground_truth_metrics(ds):
    """COCO metrics of a detection data set's own ground truth scored as detections (boxes and masks)."""
    import torch

    from stepsnet.data.coco import coco_evaluate, detections_to_coco
    outputs, ids = [], []
    for i in range(len(ds)):
        _, t = ds[i]
        outputs.append({'boxes': t['boxes'], 'labels': t['labels'], 'scores': torch.ones(len(t['labels'])),
                        'masks': t['masks'][:, None].float()})
        ids.append(t['image_id'])
    boxes, masks = detections_to_coco(outputs, ids, ds.cat_ids)
    return coco_evaluate(ds.coco, {'bbox': boxes, 'segm': masks})
