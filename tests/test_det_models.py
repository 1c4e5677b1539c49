"""Detectors on every tiny backbone family (Steps and baseline): build, forward/backward, COCO evaluation."""
import math

import pytest
import torch

import stepsnet  # noqa: F401  (registers the Steps models)
from stepsnet.data.coco import CocoInstances, coco_split_paths, collate_detection
from stepsnet.data.layouts import write_coco
from stepsnet.models.dense import FeatureBackbone
from stepsnet.models.factory import create_detector
from stepsnet.tasks.detection import evaluate_detector

pytestmark = pytest.mark.filterwarnings('ignore::DeprecationWarning')  # pycocotools on numpy 2

ONE_STEP = dict(num_steps=(1, 1, 1, 1), steps_move=(0, 0, 0, 0))
# (backbone, timm kwargs): each Steps tiny variant and a baseline of its family (timm's own tiny model where
# timm has one, else the Steps variant with a single step, which is the plain residual stage)
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
SMALL = dict(min_size=96, max_size=128, fpn_channels=16, box_head_dim=32, mask_head_channels=8,
             anchor_sizes=[16, 32, 64, 128, 256])
SMALL_RCNN = dict(rpn_batch_size_per_image=32, box_batch_size_per_image=32, rpn_pre_nms_top_n_train=100,
                  rpn_post_nms_top_n_train=50, rpn_pre_nms_top_n_test=50, rpn_post_nms_top_n_test=20,
                  box_detections_per_img=10)


@pytest.fixture(scope='module')
def coco(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('coco'))
    write_coco(root, train_images=2, val_images=2, size=(128, 96), seed=1, shape_classes=True)
    return CocoInstances(*coco_split_paths(root, 'val2017'), train=True)


pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.mark.parametrize('name,kwargs', FAMILIES, ids=IDS)
def test_feature_backbone_strides(name, kwargs):
    body = FeatureBackbone(name, **kwargs)
    feats = body(torch.randn(1, 3, 96, 128))
    assert [tuple(f.shape[-2:]) for f in feats] == [(24, 32), (12, 16), (6, 8), (3, 4)]
    assert [f.shape[1] for f in feats] == body.channels


@pytest.mark.parametrize('name,kwargs', FAMILIES, ids=IDS)
def test_mask_rcnn_trains_and_evaluates(coco, name, kwargs):
    torch.manual_seed(0)
    model = create_detector(name, coco.num_classes, model_kwargs=kwargs, **SMALL, **SMALL_RCNN)
    images, targets = collate_detection([coco[0], coco[1]])
    assert images[0].shape[1] != images[0].shape[2]  # non-square input
    losses = model(images, targets)
    assert set(losses) == {'loss_classifier', 'loss_box_reg', 'loss_mask', 'loss_objectness', 'loss_rpn_box_reg'}
    sum(losses.values()).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f'parameters without gradient: {missing[:5]}'
    metrics = evaluate_detector(model, coco)
    for key in ('bbox_AP', 'bbox_AP50', 'bbox_AP75', 'segm_AP', 'segm_AP50', 'segm_AP75'):
        assert 0.0 <= metrics[key] <= 1.0 or math.isnan(metrics[key])
    assert model.training  # evaluation restores the mode


@pytest.mark.parametrize('name', ['test_steps_resnet', 'test_steps_vit'])
def test_retinanet_trains_and_evaluates(coco, name):
    torch.manual_seed(0)
    model = create_detector(name, coco.num_classes, arch='retinanet', detections_per_img=10, topk_candidates=50,
                           **SMALL)
    images, targets = collate_detection([coco[0], coco[1]])
    losses = model(images, targets)
    assert set(losses) == {'classification', 'bbox_regression'}
    sum(losses.values()).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f'parameters without gradient: {missing[:5]}'
    metrics = evaluate_detector(model, coco)
    assert 'bbox_AP50' in metrics and 'segm_AP' not in metrics


def test_unknown_arch_and_backbone():
    with pytest.raises(ValueError, match='unknown detector'):
        create_detector('test_steps_resnet', 3, arch='yolo')
    with pytest.raises(ValueError, match='unknown backbone'):
        create_detector('no_such_model', 3)


def test_backbone_weights_from_a_classification_checkpoint(tmp_path):
    import timm
    torch.manual_seed(1)
    classifier = timm.create_model('test_steps_resnet', num_classes=10)
    path = str(tmp_path / 'cls.pt')
    torch.save({'model': classifier.state_dict(), 'epoch': 3}, path)
    body = FeatureBackbone('test_steps_resnet', weights=path)
    got = dict(body.body.named_parameters())
    for name, p in classifier.named_parameters():
        if not name.startswith('fc.'):
            assert torch.equal(got[name], p), name
    with pytest.raises(FileNotFoundError, match='missing.pt'):
        FeatureBackbone('test_steps_resnet', weights=str(tmp_path / 'missing.pt'))
