"""MNIST-1D: generated offline, deterministically and once (then cached); the 1-D residual models and their Steps
twins at equal parameters and FLOPs; the set through the classification task (data config, training, validation)."""
import os
import random
import socket
import urllib.request

import numpy as np
import pytest
import requests
import timm
import torch
from timm.models.vision_transformer import VisionTransformer

import stepsnet  # noqa: F401  (registers the models)
from stepsnet.analysis.complexity import count_macs, count_params
from stepsnet.cli import main
from stepsnet.data import mnist1d
from stepsnet.data.images import build_dataset
from stepsnet.models.factory import deit_trunk_config
from stepsnet.models.steps_1d import BasicBlock1d, StepsResNet1d
from stepsnet.steps import Steps, plan_steps
from stepsnet.tasks.classification import (
    data_config,
    load_config,
    train_classification,
    train_transform,
    validate_classification,
)

pytestmark = pytest.mark.usefixtures('one_thread')

RECIPE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'configs', 'cls', 'mnist1d.yaml')
PAIRS = [('mnist1d_resnet', 'mnist1d_steps_resnet'), ('mnist1d_resnet34', 'mnist1d_steps_resnet34'),
         ('mnist1d_vit', 'mnist1d_steps_vit'),
         ('test_mnist1d_resnet', 'test_mnist1d_steps_resnet'), ('test_mnist1d_vit', 'test_mnist1d_steps_vit')]


def _refuse_network(mp: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError(f'network access attempted: {args[:2]}')
    mp.setattr(requests, 'get', refuse)
    mp.setattr(requests.Session, 'request', refuse)
    mp.setattr(urllib.request, 'urlopen', refuse)
    mp.setattr(socket.socket, 'connect', refuse)


@pytest.fixture(scope='module')
def cache(tmp_path_factory):
    """The standard set, generated once for this module into an empty cache folder with networking refused."""
    folder = tmp_path_factory.mktemp('mnist1d-cache')
    with pytest.MonkeyPatch.context() as mp:
        _refuse_network(mp)
        arrays, path, generated = mnist1d.load_mnist1d(cache_dir=str(folder))
    assert generated and path.parent == folder and path.is_file()
    return folder, arrays, path


# ----------------------------------------------------------------------------------------------- the data set

def test_standard_split_is_the_published_one(cache):
    _, d, path = cache
    assert d['x'].shape == (4000, 40) and d['x_test'].shape == (1000, 40) and d['t'].shape == (40,)
    assert d['x'].dtype == np.float64 and d['y'].dtype == np.int64
    # 500 signals per class, shuffled before the 80/20 cut: the split is close to, not exactly, balanced
    assert (np.bincount(d['y']) + np.bincount(d['y_test'])).tolist() == [500] * 10
    assert np.bincount(d['y']).tolist() == [398, 396, 411, 394, 394, 402, 401, 404, 402, 398]
    assert d['y'][:10].tolist() == [2, 6, 4, 5, 6, 6, 6, 0, 3, 1]
    assert d['y_test'][:10].tolist() == [2, 6, 3, 9, 4, 3, 1, 9, 5, 2]
    np.testing.assert_allclose(d['x'][0, :4], [-0.3320056674, -0.4719103657, -0.7786970763, -1.0097408265], atol=1e-8)
    np.testing.assert_allclose(d['x_test'][-1, -4:], [0.4472328851, 0.6598756471, 0.8777343498, 1.1931518368],
                               atol=1e-8)
    # the package's normalisation: the whole set (train and test together) centred, standard deviation 1
    signals = np.concatenate([d['x'], d['x_test']])
    assert abs(signals.mean()) < 1e-12 and abs(signals.std() - 1) < 1e-12
    assert path.name.startswith('mnist1d-5000-seed42-') and path.suffix == '.npz'


def test_generation_is_deterministic_and_leaves_the_global_random_streams(cache, monkeypatch):
    _, first, _ = cache
    _refuse_network(monkeypatch)
    np.random.seed(123)
    random.seed(123)
    again = mnist1d.generate_mnist1d()
    for name in mnist1d.ARRAYS:
        np.testing.assert_array_equal(again[name], first[name], err_msg=name)
    drawn = (np.random.random(), random.random())  # the caller's streams, as if nothing had been generated
    np.random.seed(123)
    random.seed(123)
    assert drawn == (np.random.random(), random.random())


def test_second_load_reads_the_cache(cache, monkeypatch):
    folder, first, path = cache

    def no_generation(*args, **kwargs):
        raise AssertionError('regenerated although the cache holds the set')
    monkeypatch.setattr('mnist1d.data.make_dataset', no_generation)
    arrays, again, generated = mnist1d.load_mnist1d(cache_dir=str(folder))
    assert not generated and again == path
    for name in mnist1d.ARRAYS:
        np.testing.assert_array_equal(arrays[name], first[name], err_msg=name)
    assert sorted(p.name for p in folder.iterdir()) == [path.name]  # no temporary file left behind


def test_other_sizes_and_seeds_are_other_sets(tmp_path, monkeypatch):
    _refuse_network(monkeypatch)
    small, path, generated = mnist1d.load_mnist1d(100, seed=1, cache_dir=str(tmp_path))
    assert generated and path.name.startswith('mnist1d-100-seed1-')
    assert small['x'].shape == (80, 40) and small['x_test'].shape == (20, 40)
    assert path != mnist1d.mnist1d_cache_path(cache_dir=str(tmp_path))
    monkeypatch.setenv('STEPSNET_CACHE', str(tmp_path / 'env'))
    assert mnist1d.mnist1d_cache_path().parent == tmp_path / 'env' / 'mnist1d'
    with pytest.raises(ValueError, match='num_samples must be a positive multiple of 10'):
        mnist1d.load_mnist1d(105, cache_dir=str(tmp_path))
    with pytest.raises(ValueError, match='seed must be an integer >= 0, got -1'):
        mnist1d.load_mnist1d(seed=-1, cache_dir=str(tmp_path))


def test_unreadable_cache_file_is_regenerated(tmp_path, monkeypatch):
    _refuse_network(monkeypatch)
    path = mnist1d.mnist1d_cache_path(100, 3, str(tmp_path))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b'not a zip file')
    with pytest.warns(UserWarning, match='cannot read the cached MNIST-1D file'):
        arrays, _, generated = mnist1d.load_mnist1d(100, 3, str(tmp_path))
    assert generated and arrays['x'].shape == (80, 40)
    assert not mnist1d.load_mnist1d(100, 3, str(tmp_path))[2]


def test_dataset_for_the_classification_task(cache):
    folder, d, _ = cache
    train = build_dataset('mnist1d', str(folder), 'train', None)
    val = build_dataset('mnist1d', str(folder), 'val', None)
    assert (len(train), len(val)) == (4000, 1000)
    x, y = val[7]
    assert x.shape == mnist1d.INPUT_SIZE and x.dtype == torch.float32 and isinstance(y, int)
    assert torch.equal(x.flatten(), torch.from_numpy(d['x_test'][7].astype(np.float32))) and y == d['y_test'][7]
    assert train.classes == train.class_names == [str(i) for i in range(10)] and train.num_classes == 10
    with pytest.raises(ValueError, match="mnist1d has splits 'train' and 'val'"):
        build_dataset('mnist1d', str(folder), 'holdout', None)


def test_cli_generates_into_the_cache(cache, capsys):
    folder, _, path = cache
    assert main(['data', 'mnist1d', '--cache-dir', str(folder)]) == 0
    out = capsys.readouterr().out
    assert '4,000 train / 1,000 val (test) signals of 40 samples' in out and str(path) in out
    assert 'already cached' in out


# ----------------------------------------------------------------------------------------------- the models

@pytest.mark.parametrize('base,twin', PAIRS)
def test_twin_has_the_parameters_and_flops_of_its_residual_trunk(base, twin):
    models = [timm.create_model(name) for name in (base, twin)]
    for m in models:
        assert m.pretrained_cfg['input_size'] == mnist1d.INPUT_SIZE and m.num_classes == 10
    params = [count_params(m) for m in models]
    flops = [count_macs(m, mnist1d.INPUT_SIZE) for m in models]
    assert abs(params[1] - params[0]) / params[0] < 0.005, params
    assert abs(flops[1] - flops[0]) / flops[0] < 0.03, flops
    trunks = [[s for s in m.modules() if isinstance(s, Steps)] for m in models]
    assert all(t.plan.num_steps == 1 for t in trunks[0])  # the residual trunk: one-step plans or none at all
    assert trunks[1] and all(t.plan.num_steps >= 3 for t in trunks[1])
    assert 50_000 < params[0] < 500_000


@pytest.mark.parametrize('name', [n for pair in PAIRS for n in pair])
def test_forward_backward_reaches_every_parameter(name, cache):
    folder, _, _ = cache
    ds = build_dataset('mnist1d', str(folder), 'train', None)
    x = torch.stack([ds[i][0] for i in range(4)])
    torch.manual_seed(0)
    m = timm.create_model(name, **({'zero_init_last': False} if 'resnet' in name else {}))
    out = m(x)
    assert out.shape == (4, 10)
    torch.nn.functional.cross_entropy(out, torch.tensor([ds[i][1] for i in range(4)])).backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


def test_resnet_plans_follow_steps_resnet18():
    twin = timm.create_model('mnist1d_steps_resnet')
    assert {k: str(p) for k, p in twin.plans.items()} == {
        'stages.2': '16x2, 22x1, 32x1, 45x1, 64x0', 'stages.3': '16x2, 22x1, 32x1, 45x1, 64x1, 90x1, 128x0'}
    assert sum(isinstance(m, BasicBlock1d) for m in twin.modules()) == 18
    assert sum(isinstance(m, BasicBlock1d) for m in timm.create_model('mnist1d_resnet').modules()) == 8
    # the deeper pair follows Steps-ResNet-34 (Table 1: stage 3 in 5 steps moving 3 blocks, stage 4 in 7 moving 1)
    twin34 = timm.create_model('mnist1d_steps_resnet34')
    assert {k: str(p) for k, p in twin34.plans.items()} == {
        'stages.2': '16x6, 22x3, 32x3, 45x3, 64x2', 'stages.3': '16x2, 22x1, 32x1, 45x1, 64x1, 90x1, 128x1'}
    assert sum(isinstance(m, BasicBlock1d) for m in twin34.modules()) == 34
    assert sum(isinstance(m, BasicBlock1d) for m in timm.create_model('mnist1d_resnet34').modules()) == 16
    # a signal may come as (B, C, L) too; an image taller than one pixel is refused
    assert twin(torch.randn(2, 1, 40)).shape == (2, 10)
    with pytest.raises(ValueError, match=r'expects a \(B, C, L\) signal .* got a tensor of shape \[2, 1, 2, 40\]'):
        twin(torch.randn(2, 1, 2, 40))


def test_one_step_vit_trunk_is_timms_vision_transformer():
    torch.manual_seed(0)
    ours = timm.create_model('mnist1d_vit').eval()
    assert str(ours.blocks.plan) == '80/H4x4'
    ref = VisionTransformer(img_size=(1, 40), patch_size=(1, 4), in_chans=1, num_classes=10, embed_dim=80, depth=4,
                            num_heads=4, mlp_ratio=2.).eval()
    ref.load_state_dict(ours.state_dict())  # the same parameter names: blocks.N.* in both
    x = torch.randn(3, *mnist1d.INPUT_SIZE)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), rtol=0, atol=0)


def test_one_step_resnet_trunk_is_the_plain_block_sequence():
    torch.manual_seed(0)
    base = timm.create_model('mnist1d_resnet', zero_init_last=False).eval()
    x = torch.randn(2, 64, 10)  # the input of stage 3 after its first block
    stage = base.stages[2]
    trunk = Steps(plan_steps(64, len(stage) - 1, 1, 0), lambda width, i: stage[1 + i], dim=1, channels=64)
    with torch.no_grad():
        torch.testing.assert_close(trunk(x), stage[1:](x), rtol=0, atol=0)
    # and the model built with one step per stage is the residual baseline, parameter for parameter
    same = StepsResNet1d(layers=(2, 2, 2, 2), channels=(16, 32, 64, 128), num_steps=(1, 1, 1, 1))
    assert [n for n, _ in same.named_parameters()] == [n for n, _ in base.named_parameters()]


def test_deit_trunk_config_takes_pairs_and_leaves_square_models_unchanged():
    assert deit_trunk_config(8, 'steps', width=80, heads=4, img_size=32, patch_size=8) == (
        'steps_deit_small_patch16_224', dict(embed_dim=80, num_heads=4, img_size=32, patch_size=8, mlp_ratio=4.0,
                                             depth=8, num_steps=3, steps_move=4))
    name, kw = deit_trunk_config(4, 'steps', width=80, heads=4, img_size=(1, 40), patch_size=(1, 4), mlp_ratio=2.)
    twin = timm.create_model('mnist1d_steps_vit')
    assert str(twin.blocks.plan) == '40/H2x4, 56/H2x2, 80/H4x2'
    assert str(timm.create_model(name, in_chans=1, **kw).blocks.plan) == str(twin.blocks.plan)
    assert count_params(timm.create_model(name, in_chans=1, num_classes=10, **kw)) == count_params(twin)


# ----------------------------------------------------------------------------------------------- the task

def test_recipe_data_config_has_no_image_transform():
    cfg = load_config(RECIPE)
    assert cfg.dataset == 'mnist1d' and cfg.model == 'mnist1d_resnet'
    assert data_config(cfg) == dict(input_size=(1, 1, 40), mean=(0.0,), std=(1.0,))
    assert train_transform(cfg, data_config(cfg)) is None
    assert data_config(load_config(RECIPE, img_size=40, hflip=0.0))['input_size'] == (1, 1, 40)


@pytest.mark.parametrize('option,value', [('auto_augment', 'rand-m9-mstd0.5'), ('hflip', 0.3), ('img_size', 32),
                                          ('color_jitter', 0.2), ('reprob', 0.5), ('cutmix', 0.5),
                                          ('scale', [0.5, 1.0]), ('mean', [0.5])])
def test_image_options_are_refused_for_signals(option, value):
    with pytest.raises(ValueError, match=f"dataset 'mnist1d' holds 1-D signals, which image options do not apply "
                                         f'to: {option}='):
        data_config(load_config(RECIPE, **{option: value}))


def test_image_model_is_refused_for_signals():
    with pytest.raises(ValueError, match="model 'test_steps_resnet' takes 3-channel input, but 'mnist1d' signals"):
        data_config(load_config(RECIPE, model='test_steps_resnet'))


@pytest.mark.parametrize('model', ['test_mnist1d_steps_resnet', 'test_mnist1d_steps_vit'])
def test_two_training_steps_through_the_classification_task(model, cache, tmp_path):
    folder, _, _ = cache
    cfg = load_config(RECIPE, model=model, data_dir=str(folder), epochs=1, max_train_batches=2, batch_size=32,
                      eval_batch_size=500, workers=0, warmup_epochs=0, device='cpu', threads=1, progress=False,
                      tensorboard=False, out_dir=str(tmp_path / 'run'))
    summary = train_classification(cfg)
    assert summary['images_seen'] == 64 and summary['dataset'] == 'mnist1d'
    assert np.isfinite(summary['final_train_loss']) and 0 <= summary['final_top1'] <= 100
    assert (tmp_path / 'run' / 'best.pth').is_file()
    result = validate_classification(checkpoint=str(tmp_path / 'run' / 'best.pth'), dataset='mnist1d',
                                     data_dir=str(folder), batch_size=500, workers=0, device='cpu', progress=False)
    assert result['images'] == 1000 and result['top1'] == pytest.approx(summary['final_top1'])
