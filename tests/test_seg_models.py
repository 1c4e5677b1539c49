"""UperNet on every tiny backbone family (Steps and baseline): build, forward/backward, mIoU evaluation."""
import math

import pytest
import torch
import torch.nn.functional as F

import stepsnet  # noqa: F401  (registers the Steps models)
from stepsnet.data.ade import IGNORE_INDEX, ADE20KSegmentation
from stepsnet.data.layouts import write_ade20k
from stepsnet.models.factory import create_segmenter
from stepsnet.tasks.segmentation import evaluate_segmenter

ONE_STEP = dict(num_steps=(1, 1, 1, 1), steps_move=(0, 0, 0, 0))
FAMILIES = [
    ('test_steps_resnet', {}),
    ('test_steps_resnet_bottleneck', {}),
    ('test_resnet', {}),
    ('test_steps_vit', {}),
    ('test_vit', {}),
    ('test_steps_swin', {}),
    ('test_steps_swin', ONE_STEP),
    ('test_steps_convnext', {}),
    ('test_convnext', {}),
]
IDS = [n + ('-1step' if kw else '') for n, kw in FAMILIES]


@pytest.fixture(scope='module')
def ade(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('ade'))
    write_ade20k(root, train_images=2, val_images=2, size=(128, 96), seed=2, shape_classes=True)
    return root


pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.mark.parametrize('name,kwargs', FAMILIES, ids=IDS)
def test_upernet_trains_and_evaluates(ade, name, kwargs):
    torch.manual_seed(0)
    train = ADE20KSegmentation(ade, 'training', num_classes=4, train=True, crop_size=(96, 128), scale=(128, 96))
    val = ADE20KSegmentation(ade, 'validation', num_classes=4)
    model = create_segmenter(name, 4, channels=16, aux_channels=8, model_kwargs=kwargs)
    images, labels = zip(train[0], train[1])
    images, labels = torch.stack(images), torch.stack(labels)
    assert images.shape == (2, 3, 96, 128)
    out, aux = model(images, return_aux=True)
    assert out.shape == aux.shape == (2, 4, 96, 128)
    loss = F.cross_entropy(out, labels, ignore_index=IGNORE_INDEX) + 0.4 * F.cross_entropy(
        aux, labels, ignore_index=IGNORE_INDEX)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f'parameters without gradient: {missing[:5]}'
    for mode in ('whole', 'slide'):
        m = evaluate_segmenter(model, val, mode=mode, crop_size=(64, 64), stride=(48, 48), test_scale=(160, 112))
        assert 0.0 <= m['aAcc'] <= 1.0 and 0.0 <= m['mIoU'] <= 1.0
        assert len(m['IoU']) == 4 and all(0.0 <= v <= 1.0 or math.isnan(v) for v in m['IoU'])
    assert model.training


def test_batch_of_one_trains():
    model = create_segmenter('test_steps_resnet', 3, channels=8, aux_channels=8)
    out, aux = model(torch.rand(1, 3, 64, 96), return_aux=True)
    (out.mean() + aux.mean()).backward()
