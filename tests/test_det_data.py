"""COCO data: synthetic writer, loader, category mapping, pycocotools evaluation, clear errors on bad input."""
import json
import os

import pytest
import torch

from stepsnet.cli import main
from stepsnet.data.coco import CocoInstances, coco_evaluate, coco_split_paths, detections_to_coco
from stepsnet.data.synthetic import SHAPE_CLASSES, make_synthetic_coco

pytestmark = pytest.mark.filterwarnings('ignore::DeprecationWarning')  # pycocotools on numpy 2


@pytest.fixture()
def coco_root(tmp_path):
    root = str(tmp_path / 'coco')
    make_synthetic_coco(root, num_train=3, num_val=2, size=(64, 80), seed=3)
    return root


def _edit(ann_file, fn):
    with open(ann_file) as f:
        data = json.load(f)
    fn(data)
    with open(ann_file, 'w') as f:
        json.dump(data, f)


def test_synthetic_coco_loads(coco_root):
    ds = CocoInstances(*coco_split_paths(coco_root, 'train2017'))
    assert len(ds) == 3 and ds.classes == list(SHAPE_CLASSES)
    image, target = ds[0]
    assert image.dtype == torch.float32 and image.shape[0] == 3 and 0 <= image.min() and image.max() <= 1
    n = len(target['labels'])
    assert n >= 1 and target['boxes'].shape == (n, 4) and target['masks'].shape == (n, *image.shape[1:])
    assert (target['boxes'][:, 2:] > target['boxes'][:, :2]).all()
    assert set(target['labels'].tolist()) <= {1, 2, 3}
    # every mask lies inside its box
    for box, mask in zip(target['boxes'], target['masks']):
        ys, xs = torch.nonzero(mask, as_tuple=True)
        assert xs.min() >= box[0] - 1 and xs.max() <= box[2] and ys.min() >= box[1] - 1 and ys.max() <= box[3]


def test_ground_truth_scores_perfect_ap(coco_root):
    ds = CocoInstances(*coco_split_paths(coco_root, 'val2017'))
    outputs, ids = [], []
    for i in range(len(ds)):
        _, t = ds[i]
        outputs.append({'boxes': t['boxes'], 'labels': t['labels'], 'scores': torch.ones(len(t['labels'])),
                        'masks': t['masks'][:, None].float()})
        ids.append(t['image_id'])
    boxes, masks = detections_to_coco(outputs, ids, ds.cat_ids)
    m = coco_evaluate(ds.coco, {'bbox': boxes, 'segm': masks})
    assert m['bbox_AP'] > 0.99 and m['bbox_AP50'] > 0.99 and m['segm_AP'] > 0.99
    # the data set still decodes its masks after evaluation (pycocotools edits annotations in place)
    assert ds[0][1]['masks'].sum() > 0
    assert coco_evaluate(ds.coco, {'bbox': []})['bbox_AP'] == 0.0


def test_non_contiguous_category_ids(coco_root):
    image_dir, ann = coco_split_paths(coco_root, 'val2017')
    remap = {1: 5, 2: 17, 3: 90}

    def edit(d):
        for c in d['categories']:
            c['id'] = remap[c['id']]
        for a in d['annotations']:
            a['category_id'] = remap[a['category_id']]
    _edit(ann, edit)
    ds = CocoInstances(image_dir, ann)
    assert ds.cat_ids == [5, 17, 90]
    _, t = ds[0]
    assert set(t['labels'].tolist()) <= {1, 2, 3}
    dets = [{'boxes': t['boxes'], 'labels': t['labels'], 'scores': torch.ones(len(t['labels']))}]
    boxes, _ = detections_to_coco(dets, [t['image_id']], ds.cat_ids)
    assert {b['category_id'] for b in boxes} <= {5, 17, 90}


def test_missing_annotation_file(coco_root):
    image_dir, _ = coco_split_paths(coco_root, 'val2017')
    missing = os.path.join(coco_root, 'annotations', 'instances_nope.json')
    with pytest.raises(FileNotFoundError, match='instances_nope.json'):
        CocoInstances(image_dir, missing)


def test_annotation_points_to_missing_image(coco_root):
    image_dir, ann = coco_split_paths(coco_root, 'val2017')
    _edit(ann, lambda d: d['images'][1].update(file_name='gone.jpg'))
    with pytest.raises(FileNotFoundError, match=r'gone\.jpg.*id \d+, listed in .*instances_val2017\.json'):
        CocoInstances(image_dir, ann)


def test_category_out_of_range(coco_root):
    image_dir, ann = coco_split_paths(coco_root, 'val2017')
    _edit(ann, lambda d: d['annotations'][0].update(category_id=99))
    with pytest.raises(ValueError, match=r'annotation \d+ .*category_id 99; expected one of \[1, 2, 3\]'):
        CocoInstances(image_dir, ann)


def test_annotation_with_unknown_image(coco_root):
    image_dir, ann = coco_split_paths(coco_root, 'val2017')
    _edit(ann, lambda d: d['annotations'][0].update(image_id=12345))
    with pytest.raises(ValueError, match='image_id 12345'):
        CocoInstances(image_dir, ann)


def test_empty_image_list(coco_root):
    image_dir, ann = coco_split_paths(coco_root, 'val2017')
    _edit(ann, lambda d: d.update(images=[], annotations=[]))
    with pytest.raises(ValueError, match='lists no images'):
        CocoInstances(image_dir, ann)


def test_invalid_json(coco_root):
    image_dir, ann = coco_split_paths(coco_root, 'val2017')
    with open(ann, 'w') as f:
        f.write('{"images": [')
    with pytest.raises(ValueError, match='not valid JSON'):
        CocoInstances(image_dir, ann)


def test_synth_coco_command(tmp_path, capsys):
    out = str(tmp_path / 'c')
    assert main(['data', 'synth-coco', '--out', out, '--num-train', '2', '--num-val', '1', '--size', '48,64']) == 0
    assert 'train2017: 2 images' in capsys.readouterr().out
    with open(os.path.join(out, 'annotations', 'instances_val2017.json')) as f:
        data = json.load(f)
    assert len(data['images']) == 1 and data['annotations'] and data['categories'][0]['name'] == 'rectangle'
    img = data['images'][0]
    from PIL import Image
    with Image.open(os.path.join(out, 'val2017', img['file_name'])) as im:
        assert im.size == (img['width'], img['height'])
    for a in data['annotations']:
        x, y, w, h = a['bbox']
        assert 0 <= x and 0 <= y and x + w <= img['width'] and y + h <= img['height'] and 0 < a['area'] <= w * h


def test_eval_det_reports_missing_file(tmp_path, capsys):
    assert main(['eval-det', '--checkpoint', str(tmp_path / 'none.pt')]) == 2
    assert 'none.pt' in capsys.readouterr().err
