"""COCO data: synthetic writer, loader, category mapping, pycocotools evaluation, clear errors on bad input."""
import json
import os
import re

import numpy as np
import pytest
import torch
from conftest import ground_truth_metrics
from snapshots import snapshot

import stepsnet.data.layouts as layouts
import stepsnet.data.synthetic as synthetic
from stepsnet.cli import main
from stepsnet.data.coco import CocoInstances, coco_evaluate, coco_split_paths, detections_to_coco
from stepsnet.data.layouts import write_coco
from stepsnet.data.synthetic import SHAPE_CLASSES

pytestmark = pytest.mark.filterwarnings('ignore::DeprecationWarning')  # pycocotools on numpy 2


@pytest.fixture()
def coco_root(tmp_path):
    root = str(tmp_path / 'coco')
    write_coco(root, train_images=3, val_images=2, size=(80, 64), seed=3, shape_classes=True)
    return root


def _edit(ann_file, fn):
    with open(ann_file) as f:
        data = json.load(f)
    fn(data)
    with open(ann_file, 'w') as f:
        json.dump(data, f)


def test_synthetic_coco_loads(coco_root):
    ds = CocoInstances(*coco_split_paths(coco_root, 'train2017'))
    assert len(ds) == 3 and ds.classes == list(SHAPE_CLASSES) and ds.class_names == list(SHAPE_CLASSES)
    assert ds.num_classes == len(SHAPE_CLASSES) and ds.label_of[ds.cat_ids[0]] == ds.first_label == 1
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
    m = ground_truth_metrics(ds)
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


def _image_names(root, split):
    with open(os.path.join(root, 'annotations', f'instances_{split}.json')) as f:
        return [os.path.join(split, i['file_name']) for i in json.load(f)['images']]


def test_synthetic_coco_does_not_overwrite_an_existing_data_set(coco_root, tmp_path):
    before = snapshot(coco_root)
    first = _image_names(coco_root, 'train2017')[0]
    with pytest.raises(FileExistsError, match=r"instances_train2017\.json' already exists \(and \d+ more of its "
                                              r"files\); refusing to overwrite it with a COCO-layout data set.*force"):
        write_coco(coco_root, train_images=3, val_images=2, size=(80, 64), seed=4, shape_classes=True)
    os.remove(os.path.join(coco_root, 'annotations', 'instances_train2017.json'))
    os.remove(os.path.join(coco_root, 'annotations', 'instances_val2017.json'))
    with pytest.raises(FileExistsError, match=re.escape(f"{first}' already exists")):  # images alone too
        write_coco(coco_root, train_images=3, val_images=2, size=(80, 64), seed=3, shape_classes=True)
    assert snapshot(coco_root) == {k: v for k, v in before.items() if not k.startswith('annotations')}
    assert sorted(os.listdir(tmp_path)) == ['coco']  # no temporary folder left beside it
    write_coco(coco_root, train_images=3, val_images=2, size=(80, 64), seed=4, shape_classes=True, force=True)
    after = snapshot(coco_root)
    assert set(before) - {f for f in before if f.startswith('annotations')} < set(after)  # earlier images stay
    ann = os.path.join('annotations', 'instances_train2017.json')
    assert after[ann] != before[ann] and all(name in after for name in _image_names(coco_root, 'train2017'))


def test_synthetic_coco_joins_a_folder_without_its_files(tmp_path):
    out = tmp_path / 'c'
    out.mkdir()
    (out / 'README.txt').write_text('mine')
    write_coco(str(out), train_images=1, val_images=1, size=(32, 32), shape_classes=True)
    assert (out / 'README.txt').read_text() == 'mine' and (out / 'annotations' / 'instances_val2017.json').is_file()
    names = _image_names(str(out), 'val2017')
    assert len(names) == 1 and os.listdir(out / 'val2017') == [os.path.basename(names[0])]


def test_failed_generation_leaves_nothing_behind(tmp_path, monkeypatch):
    draw = synthetic.draw_scene
    calls = []

    def fail_on_the_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError('disk full')
        return draw(*args, **kwargs)
    monkeypatch.setattr(layouts, 'draw_scene', fail_on_the_third)
    with pytest.raises(RuntimeError, match='disk full'):
        write_coco(str(tmp_path / 'new'), train_images=2, val_images=2, size=(32, 32), shape_classes=True)
    assert os.listdir(tmp_path) == []
    (tmp_path / 'old').mkdir()
    (tmp_path / 'old' / 'keep.txt').write_text('mine')
    before = snapshot(tmp_path)
    calls.clear()
    with pytest.raises(RuntimeError, match='disk full'):
        write_coco(str(tmp_path / 'old'), train_images=2, val_images=2, size=(32, 32), shape_classes=True)
    assert snapshot(tmp_path) == before and os.listdir(tmp_path) == ['old']


@pytest.mark.parametrize('kwargs, message', [
    (dict(max_shapes=0), 'max_shapes must be an integer >= 1, got 0'),
    (dict(train_images=0), 'train_images must be an integer >= 1, got 0'),
    (dict(val_images=-2), 'val_images must be an integer >= 1, got -2'),
    (dict(size=(0, 64)), r'size must be two integers \(width, height\), each >= 32, got \(0, 64\)'),
    (dict(size=(64,)), r'size must be two integers'),
    (dict(size=(64, 31)), r'size must be two integers \(width, height\), each >= 32, got \(64, 31\)'),
])
def test_synthetic_coco_checks_its_arguments(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        write_coco(str(tmp_path / 'c'), shape_classes=True, **kwargs)
    assert os.listdir(tmp_path) == []


def test_draw_scene_checks_its_arguments():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match='max_shapes must be >= 1, got 0'):
        synthetic.draw_scene(32, 32, rng, max_shapes=0)
    with pytest.raises(ValueError, match=r'image size 8x32 \(height x width\) is too small; expected sides >= 16'):
        synthetic.draw_scene(8, 32, rng)


def test_aspect_groups_read_each_images_orientation_also_through_a_resized_set(tmp_path):
    from stepsnet.data.coco import aspect_groups
    from stepsnet.utils.dryrun import Resized
    root = write_coco(str(tmp_path / 'coco'), train_images=6, val_images=1, size=(64, 48))
    ds = CocoInstances(*coco_split_paths(root, 'train2017'), train=True)
    sizes = [(ds.coco.imgs[i]['width'], ds.coco.imgs[i]['height']) for i in ds.ids]
    assert aspect_groups(ds) == [int(h > w) for w, h in sizes] and set(aspect_groups(ds)) == {0, 1}
    assert aspect_groups(Resized(ds, 14)) == [aspect_groups(ds)[i % 6] for i in range(14)]
