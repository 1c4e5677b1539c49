"""Generated data sets in the real layouts of ImageNet-1K, COCO 2017, ADE20K and WikiText-103, read by our loaders."""
import filecmp
import json
import os

import numpy as np
import pytest
import torch
from conftest import ground_truth_metrics
from PIL import Image
from snapshots import snapshot
from timm.data import create_transform

from stepsnet.cli import main
from stepsnet.data.ade import IGNORE_INDEX, ADE20KSegmentation
from stepsnet.data.coco import CocoInstances, coco_split_paths
from stepsnet.data.images import build_dataset
from stepsnet.data.layouts import (
    COCO_CATEGORIES,
    IMAGENET_FIRST_WNIDS,
    write_ade20k,
    write_coco,
    write_imagenet,
    write_layout,
    write_wikitext103,
)
from stepsnet.data.text import BPETokenizer, TokenData
from stepsnet.tasks.classification import data_config, load_config

pytestmark = pytest.mark.filterwarnings('ignore::DeprecationWarning')  # pycocotools on numpy 2

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'configs')


@pytest.fixture(scope='module')
def layouts(tmp_path_factory):
    """Each task's layout, written once through the dispatcher: ``{task: (root, data_dir)}``."""
    out = {}
    for task in ('cls', 'det', 'seg', 'lm'):
        root = str(tmp_path_factory.mktemp(task) / 'data')
        out[task] = root, write_layout(task, root, seed=1)
    return out


@pytest.mark.parametrize('recipe', ['resnet50_rsb_a2', 'deit_small_imagenet'])
def test_imagenet_layout_through_the_recipe_transforms(layouts, recipe):
    root, data_dir = layouts['cls']
    assert data_dir == root
    cfg = load_config(os.path.join(CONFIGS, 'cls', f'{recipe}.yaml'), data_dir=data_dir)
    dcfg = data_config(cfg)
    train_tf = create_transform(**dcfg, is_training=True, scale=cfg.scale, ratio=cfg.ratio, hflip=cfg.hflip,
                                color_jitter=cfg.color_jitter or 0.0, auto_augment=cfg.auto_augment,
                                re_prob=cfg.reprob)
    train = build_dataset(cfg.dataset, cfg.data_dir, cfg.train_split, train_tf)
    val = build_dataset(cfg.dataset, cfg.data_dir, cfg.val_split, create_transform(**dcfg))
    assert train.class_names == val.class_names == list(IMAGENET_FIRST_WNIDS[:4])
    assert train.num_classes == 4 and len(train) == len(val) == 8
    for ds in (train, val):
        for i in range(len(ds)):
            x, y = ds[i]
            assert x.shape == (3, 224, 224) and x.dtype == torch.float32 and 0 <= y < 4


def test_imagenet_file_names_sizes_and_modes(layouts):
    root, _ = layouts['cls']
    wnid = IMAGENET_FIRST_WNIDS[0]
    train_files = sorted(os.listdir(os.path.join(root, 'train', wnid)))
    val_files = sorted(os.listdir(os.path.join(root, 'val', wnid)))
    assert all(f.startswith(f'{wnid}_') and f.endswith('.JPEG') for f in train_files)
    assert all(f.startswith('ILSVRC2012_val_') and f.endswith('.JPEG') for f in val_files)
    modes, shapes = [], []
    for split in ('train', 'val'):
        for dirpath, _, names in os.walk(os.path.join(root, split)):
            for name in names:
                with Image.open(os.path.join(dirpath, name)) as im:
                    assert im.format == 'JPEG'
                    modes.append(im.mode)
                    shapes.append(im.size)
    assert sorted(modes)[:2] == ['CMYK', 'L'] and modes.count('RGB') == len(modes) - 2
    assert all(150 <= s <= 500 for size in shapes for s in size)
    assert any(w > h for w, h in shapes) and any(h > w for w, h in shapes) and len(set(shapes)) > len(shapes) // 2


def test_coco_layout_reads_with_masks_and_crowds(layouts):
    root, data_dir = layouts['det']
    assert data_dir == root
    from torchvision.models.detection import MaskRCNN_ResNet50_FPN_Weights
    torchvision_names = MaskRCNN_ResNet50_FPN_Weights.DEFAULT.meta['categories']  # index = COCO id, gaps 'N/A'
    for split, count in (('train2017', 3), ('val2017', 2)):
        ds = CocoInstances(*coco_split_paths(data_dir, split), masks=True)
        assert len(ds) == count and ds.num_classes == 80
        assert ds.cat_ids == [c[0] for c in COCO_CATEGORIES] and ds.cat_ids[-1] == 90
        assert ds.classes == [torchvision_names[c] for c in ds.cat_ids]
        assert ds.coco.cats[1]['supercategory'] == 'person' and ds.coco.cats[90]['supercategory'] == 'indoor'
        crowds = [a for a in ds.coco.dataset['annotations'] if a['iscrowd']]
        assert len(crowds) == 1 and crowds[0]['category_id'] == 1 and isinstance(crowds[0]['segmentation'], dict)
        assert isinstance(crowds[0]['segmentation']['counts'], list)  # uncompressed, as COCO stores crowds
        for index, image_id in enumerate(ds.ids):
            info = ds.coco.imgs[image_id]
            with Image.open(os.path.join(ds.image_dir, info['file_name'])) as im:
                assert im.size == (info['width'], info['height'])
            assert 400 <= min(im.size) <= 480 and max(im.size) == 640 and info['file_name'] == f'{image_id:012d}.jpg'
            anns = ds.coco.imgToAnns[image_id]
            image, target = ds[index]
            _, raw = ds.dataset[index]  # before the crowd is left out of the training target
            assert image.shape == (3, info['height'], info['width'])
            assert raw['masks'].shape[0] == len(anns) and len(target['labels']) == sum(not a['iscrowd'] for a in anns)
            assert target['masks'].shape == (len(target['labels']), info['height'], info['width'])
            for ann, mask in zip(anns, raw['masks']):
                assert mask.sum() > 0 and abs(float(mask.sum()) - ann['area']) <= 0.02 * ann['area'] + 40
            if crowds[0]['image_id'] == image_id:
                assert 1 in raw['iscrowd']
    # scoring the ground truth as detections: the crowd region is ignored, every instance found
    m = ground_truth_metrics(ds)
    assert m['bbox_AP50'] > 0.99 and m['segm_AP50'] > 0.99


def test_ade20k_layout_reads_in_range(layouts):
    root, data_dir = layouts['seg']
    assert data_dir == root
    for split, count in (('training', 3), ('validation', 2)):
        ds = ADE20KSegmentation(data_dir, split, num_classes=150)
        prefix = {'training': 'ADE_train', 'validation': 'ADE_val'}[split]
        assert len(ds) == count and os.path.basename(ds.files[0][0]) == f'{prefix}_00000001.jpg'
        for i in range(count):
            with Image.open(ds.files[i][1]) as im:
                assert im.mode == 'L' and 0 in np.asarray(im) and np.asarray(im).max() <= 150
            image, label = ds[i]
            assert image.shape[1:] == label.shape and label.dtype == torch.int64
            valid = label[label != IGNORE_INDEX]
            assert (label == IGNORE_INDEX).any() and valid.min() >= 0 and valid.max() < 150
            assert len(valid.unique()) >= 3
    sizes = [ADE20KSegmentation(data_dir, 'training').load(i)[1].shape for i in range(3)]
    assert len(set(sizes)) == 3 and any(h > w for h, w in sizes)
    crop = ADE20KSegmentation(data_dir, 'training', num_classes=150, train=True)  # the recipe's pipeline
    image, label = crop[0]
    assert image.shape == (3, 512, 512) and label.shape == (512, 512)


def test_wikitext_layout_prepares_as_the_recipes_say(layouts, tmp_path):
    root, data_dir = layouts['lm']
    raw = os.path.join(root, 'raw')
    with open(os.path.join(raw, 'wiki.valid.raw'), encoding='utf-8') as f:
        valid = f.read()
    assert valid.startswith(' \n = ') and '\n = = ' in valid and ' @-@ ' in valid and ' @,@ ' in valid
    assert all(line.startswith(' ') and line.endswith(' ') for line in valid.split('\n')[:-1])
    # the command in the recipes' comment
    out = str(tmp_path / 'wikitext103-gpt2')
    main(['data', 'prepare-text', raw, '--tokenizer', 'bpe', '--vocab', os.path.join(raw, 'vocab.json'),
          '--merges', os.path.join(raw, 'merges.txt'), '--out', out])
    data = TokenData.open(out)
    assert data.meta['source']['kind'] == 'wikitext' and set(data.splits) == {'train', 'val', 'test'}
    assert data.vocab_size == 50257 and data.meta['tokenizer']['eot_id'] == 50256
    for split in ('train', 'val', 'test'):
        data.check_context(1024, split)
        assert len(data.splits[split]) >= 16 * 1024 + 1  # a full batch of non-overlapping 1,024-token windows
    x, y = data.get_batch('val', 16, 1024, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (16, 1024)
    assert filecmp.cmp(os.path.join(out, 'val.bin'), os.path.join(data_dir, 'val.bin'), shallow=False)
    tok = BPETokenizer.from_gpt2_files(os.path.join(raw, 'vocab.json'), os.path.join(raw, 'merges.txt'))
    assert tok.decode(tok.encode(valid[:5000])) == valid[:5000]
    head = data.tokenizer().decode(data.splits['val'][:200].tolist())  # the tokenizer stored with the tokens
    assert len(head) > 200 and valid.startswith(head)


def test_same_seed_same_bytes(layouts, tmp_path):
    raw = os.path.join(layouts['lm'][0], 'raw')
    again = write_wikitext103(str(tmp_path / 'wt'), seed=1)
    for name in ('wiki.train.raw', 'vocab.json', 'merges.txt'):
        assert filecmp.cmp(os.path.join(raw, name), os.path.join(again, name), shallow=False), name
    a = write_coco(str(tmp_path / 'a'), train_images=1, val_images=1, size=(160, 120), seed=5)
    b = write_coco(str(tmp_path / 'b'), train_images=1, val_images=1, size=(160, 120), seed=5)
    c = write_coco(str(tmp_path / 'c'), train_images=1, val_images=1, size=(160, 120), seed=6)
    ann = os.path.join('annotations', 'instances_val2017.json')
    assert filecmp.cmp(os.path.join(a, ann), os.path.join(b, ann), shallow=False)
    assert not filecmp.cmp(os.path.join(a, ann), os.path.join(c, ann), shallow=False)
    with open(os.path.join(a, ann)) as f:
        name = json.load(f)['images'][0]['file_name']
    assert filecmp.cmp(os.path.join(a, 'val2017', name), os.path.join(b, 'val2017', name), shallow=False)


@pytest.mark.parametrize('command, task', [('synth-coco', 'det'), ('synth-ade', 'seg')])
def test_the_shapes_commands_write_through_the_task_tables_writer(command, task, tmp_path):
    """One generator per layout: ``stepsnet data synth-*`` writes the bytes of the task table's writer."""
    cli, table = str(tmp_path / 'cli'), str(tmp_path / 'table')
    assert main(['data', command, '--out', cli, '--num-train', '1', '--num-val', '1', '--size', '48,64',
                 '--max-shapes', '2', '--seed', '2']) == 0  # --size is H,W; the writers take (width, height)
    write_layout(task, table, seed=2, shape_classes=True, train_images=1, val_images=1, size=(64, 48), max_shapes=2)
    files = {k: v[0] for k, v in snapshot(cli).items()}
    assert len(files) >= 4 and files == {k: v[0] for k, v in snapshot(table).items()}


def test_dispatcher_and_argument_errors(layouts, tmp_path):
    with pytest.raises(ValueError, match=r'cls \(image classification on ImageNet-1K\), det .*, seg .*, lm'):
        write_layout('pose', str(tmp_path / 'x'))
    assert not os.path.exists(tmp_path / 'x')
    with pytest.raises(FileExistsError, match='force=True'):
        write_layout('seg', layouts['seg'][0], seed=1)
    with pytest.raises(ValueError, match='classes must be an integer >= 1'):
        write_imagenet(str(tmp_path / 'i'), classes=0)
    with pytest.raises(ValueError, match='size must be two integers'):
        write_ade20k(str(tmp_path / 'a'), size=(683,))
    with pytest.raises(ValueError, match='vocab_size'):
        write_wikitext103(str(tmp_path / 'w'), vocab_size=100)
    assert not any(os.path.exists(tmp_path / n) for n in 'iaw')


@pytest.mark.parametrize('old, task', [('make_synthetic_coco', 'det'), ('make_synthetic_ade', 'seg')])
def test_the_earlier_shapes_functions_warn_and_write_through_the_layout_writer(old, task, tmp_path):
    """make_synthetic_coco / _ade (size as (height, width)) still work, deprecated: the same bytes as the writer."""
    from stepsnet.data import synthetic
    with pytest.warns(DeprecationWarning, match='write_layout'):
        summary = getattr(synthetic, old)(str(tmp_path / 'old'), num_train=2, num_val=1, size=(48, 64), seed=3)
    write_layout(task, str(tmp_path / 'new'), seed=3, shape_classes=True, train_images=2, val_images=1,
                 size=(64, 48), max_shapes=3)
    files = {k: v[0] for k, v in snapshot(str(tmp_path / 'old')).items()}
    assert len(files) >= 4 and files == {k: v[0] for k, v in snapshot(str(tmp_path / 'new')).items()}
    assert [v['images'] for v in summary['splits'].values()] == [2, 1]


def test_the_shapes_size_error_speaks_the_flags_order(tmp_path, capsys):
    assert main(['data', 'synth-coco', '--out', str(tmp_path / 'c'), '--size', '20,128']) == 2
    err = capsys.readouterr().err
    assert '--size must be two whole numbers H,W (height, width), each >= 32, got 20,128' in err
    assert not os.path.exists(tmp_path / 'c')


def test_a_shapes_summary_names_a_folder_with_neither_layout(tmp_path):
    from stepsnet.data.synthetic import shapes_summary
    with pytest.raises(FileNotFoundError, match='neither a COCO 2017 layout'):
        shapes_summary(str(tmp_path))
