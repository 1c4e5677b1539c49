"""Steps-ResNet and Steps-DeiT: paper parity (Table 1), full-size options, and what only these families have.

The timm contract every family shares is tested on the tiny variants in test_timm_contract.py.
"""
import pytest
import timm
import torch
from conftest import create_tiny, drop_path_rates
from timm.models import group_parameters

import stepsnet  # noqa: F401  (registers the models)
from stepsnet.analysis.complexity import PAPER_TABLE1
from stepsnet.steps import Steps

PAIRS = [
    ('steps_resnet18', 'resnet18'),
    ('steps_resnet34', 'resnet34'),
    ('steps_resnet50', 'resnet50'),
    ('steps_deit_tiny_patch16_224', 'deit_tiny_patch16_224'),
    ('steps_deit_small_patch16_224', 'deit_small_patch16_224'),
    ('steps_deit_base_patch16_224', 'deit_base_patch16_224'),
]


@pytest.mark.parametrize('name,baseline', PAIRS)
def test_parity_with_table1(name, baseline, model_table):
    rows = {r.name: r for r in model_table}
    row, base = rows[name], rows[baseline]
    assert row.baseline == baseline
    blocks, layers, paper_params, paper_gflops = PAPER_TABLE1[name]
    assert (row.blocks, row.layers) == (blocks, layers)
    assert (base.blocks, base.layers) == PAPER_TABLE1[baseline][:2]
    assert abs(row.params - base.params) / base.params < 0.005, (row.params, base.params)
    assert abs(row.macs / 1e9 - paper_gflops) / paper_gflops < 0.03, (row.macs, paper_gflops)


def test_attention_flops_are_counted(model_table):
    """Steps-DeiT costs more than DeiT only through attention (2 N^2 C per block): the counter must see it."""
    rows = {r.name: r for r in model_table}
    s, b = rows['steps_deit_small_patch16_224'], rows['deit_small_patch16_224']
    n = 197
    attn = lambda widths: sum(2 * n * n * w for w in widths)  # noqa: E731
    extra_attention = attn([192] * 12 + [272] * 6 + [384] * 6) - attn([384] * 12)
    assert s.macs - b.macs == pytest.approx(extra_attention, rel=0.25)
    assert b.gflops == pytest.approx(4.60, abs=0.01)


@pytest.mark.parametrize('name', [p[0] for p in PAIRS])
def test_create_model_options(name):
    m = timm.create_model(name, pretrained=False, num_classes=0)
    assert m.num_classes == 0 and m.get_classifier() is not None
    assert m.pretrained_cfg['paper_ids'] == 'arXiv:2511.14329'
    m = timm.create_model(name, num_classes=0, global_pool='', in_chans=1).eval()
    assert m.in_chans == 1
    x = torch.randn(1, 1, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(m(x), m.forward_features(x))  # no pooling, no classifier
    m = timm.create_model(name, num_classes=10)
    assert m.get_classifier().out_features == 10
    f = timm.create_model(name, features_only=True)
    assert f.feature_info.channels()[-1] == m.num_features


@pytest.mark.parametrize('name', ['steps_resnet50', 'steps_deit_small_patch16_224'])
def test_features_only_full_size(name):
    m = timm.create_model(name, features_only=True)
    with torch.no_grad():
        feats = m(torch.randn(1, 3, 224, 224))
    assert [f.shape[1] for f in feats] == m.feature_info.channels()
    assert [224 // f.shape[-1] for f in feats] == m.feature_info.reduction()


def test_vit_prune_intermediate_layers():
    m = create_tiny('test_steps_vit').eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        _, inter = m.forward_intermediates(x, indices=[5], norm=False)
        m.prune_intermediate_layers([5], prune_head=True)
        assert len(m.blocks) == 6 and m.num_classes == 0
        pruned = m.forward_intermediates(x, indices=[5], intermediates_only=True)
    torch.testing.assert_close(pruned[0], inter[0])


@pytest.mark.parametrize('name,blocks', [('steps_resnet34', 34), ('steps_deit_small_patch16_224', 24)])
def test_drop_path_spread_over_real_sequence(name, blocks):
    rates = drop_path_rates(timm.create_model(name, drop_path_rate=0.2, device='meta'))
    assert len(rates) == blocks
    assert rates[0] == 0. and rates[-1] == pytest.approx(0.2)
    assert rates == sorted(rates) and len(set(rates)) == len(rates)


def test_no_weight_decay_vit():
    assert {'pos_embed', 'cls_token'} <= create_tiny('test_steps_vit').no_weight_decay()


@pytest.mark.parametrize('name,size', [('test_steps_vit', 32)])
def test_torch_compile_inductor(name, size):
    """Inductor's code generation over a Steps trunk (one family: its cold compile takes tens of seconds on 2 cores;
    every family is compiled with the aot_eager backend in tests/test_timm_contract.py)."""
    torch.manual_seed(0)
    m = create_tiny(name).eval()
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        ref = m(x)
        compiled = torch.compile(m)
        out = compiled(x)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


def test_steps_input_channels_checked_in_model():
    m = create_tiny('test_steps_vit')
    with pytest.raises(ValueError, match='expected 64 channels'):
        m.blocks(torch.randn(1, 5, 32))


def test_resnet_group_matcher_coarse_is_one_group_per_stage():
    m = create_tiny('test_steps_resnet')
    assert len(group_parameters(m, m.group_matcher(coarse=True))) == 6  # stem, 4 stages, head
    assert timm.create_model('test_steps_resnet', features_only=True).feature_info.reduction() == [2, 4, 8, 16, 32]


# ---- output_stride: the dilation of converted stages ----

@pytest.mark.parametrize('output_stride', [16, 8])
def test_resnet_output_stride_matches_the_baseline(output_stride):
    """Dilated stages: features_only strides and shapes equal timm's ResNet-50 (counted on the meta device)."""
    kw = dict(features_only=True, output_stride=output_stride, device='meta')
    steps, base = timm.create_model('steps_resnet50', **kw), timm.create_model('resnet50', **kw)
    assert steps.feature_info.reduction() == base.feature_info.reduction()
    assert steps.feature_info.channels() == base.feature_info.channels()
    x = torch.zeros(1, 3, 224, 224, device='meta')
    assert [f.shape for f in steps(x)] == [f.shape for f in base(x)]
    # every block of a dilated stage's trunk is dilated like the baseline's blocks of that stage
    full = timm.create_model('steps_resnet50', output_stride=output_stride, device='meta')
    ref = timm.create_model('resnet50', output_stride=output_stride, device='meta')
    for stage in ('layer3', 'layer4'):
        expected = getattr(ref, stage)[-1].conv2.dilation
        trunk = getattr(full, stage)[1]
        assert isinstance(trunk, Steps) and all(b.conv2.dilation == expected for b in trunk)


def test_resnet_output_stride_16_forward(one_thread):
    m = create_tiny('test_steps_resnet', features_only=True, output_stride=16).eval()
    assert m.feature_info.reduction() == [2, 4, 8, 16, 16]
    with torch.no_grad():
        feats = m(torch.randn(2, 3, 64, 64))
    assert [tuple(f.shape[-2:]) for f in feats] == [(32, 32), (16, 16), (8, 8), (4, 4), (4, 4)]
    assert all(torch.isfinite(f).all() for f in feats)
