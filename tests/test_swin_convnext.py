"""Steps-Swin and Steps-ConvNeXt: parity with their timm baselines, the paper's plans, and what only these families
have (shifted windows, NHWC features, dynamic sizes, dilation).

The timm contract every family shares is tested on the tiny variants in test_timm_contract.py.
"""
import pytest
import timm
import torch
from conftest import create_tiny
from timm.models import group_parameters
from timm.models.convnext import ConvNeXtBlock
from timm.models.swin_transformer import SwinTransformerBlock

import stepsnet  # noqa: F401  (registers the models)
from stepsnet.analysis.complexity import PAPER_TABLE1, count_blocks
from stepsnet.models.steps_convnext import StepsConvNeXt
from stepsnet.models.steps_swin import StepsSwinTransformer
from stepsnet.steps import Steps

SWIN = [
    ('steps_swin_tiny_patch4_window7_224', 'swin_tiny_patch4_window7_224'),
    ('steps_swin_small_patch4_window7_224', 'swin_small_patch4_window7_224'),
    ('steps_swin_base_patch4_window7_224', 'swin_base_patch4_window7_224'),
]
CONVNEXT = [
    ('steps_convnext_tiny', 'convnext_tiny'),
    ('steps_convnext_small', 'convnext_small'),
    ('steps_convnext_base', 'convnext_base'),
]
TINY = ['test_steps_swin', 'test_steps_convnext']
SIZE = 64
tiny = create_tiny


@pytest.fixture(scope='module')
def rows(model_table):
    return {r.name: r for r in model_table}


# ---- parity (the `stepsnet models` rows) ----

@pytest.mark.parametrize('name,baseline', SWIN)
def test_swin_parity(rows, name, baseline):
    row, base = rows[name], rows[baseline]
    blocks, layers, _, paper_gflops = PAPER_TABLE1[name]
    assert (row.blocks, row.layers) == (blocks, layers)
    assert (base.blocks, base.layers) == PAPER_TABLE1[baseline][:2]
    assert abs(row.params - base.params) / base.params < 0.005, (row.params, base.params)
    assert abs(row.macs / 1e9 - paper_gflops) / paper_gflops < 0.03, (row.macs, paper_gflops)
    assert row.paper_params_m == PAPER_TABLE1[name][2]  # printed beside ours


@pytest.mark.parametrize('name,baseline', CONVNEXT)
def test_convnext_parity(rows, name, baseline):
    row, base = rows[name], rows[baseline]
    assert abs(row.params - base.params) / base.params < 0.005, (row.params, base.params)
    assert abs(row.macs - base.macs) / base.macs < 0.01, (row.macs, base.macs)
    assert row.blocks == base.blocks + 10  # stage 3: +6 blocks, stage 4: +4 blocks


# ---- plans: the paper's rows (Table 14) come out of the planner ----

def test_swin_plans_match_spec():
    t = StepsSwinTransformer(depths=(2, 2, 6, 2), device='meta')
    assert str(t.plans['layers.2']) == '192/H6x6, 272/H8x3, 384/H12x3'
    assert str(t.plans['layers.3']) == '192/H6x4, 272/H8x2, 384/H12x2, 544/H16x2, 768/H24x0'
    s = StepsSwinTransformer(depths=(2, 2, 18, 2), device='meta')
    assert str(s.plans['layers.2']) == '192/H6x6, 272/H8x3, 384/H12x15'
    b = StepsSwinTransformer(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32), device='meta')
    assert str(b.plans['layers.2']) == '256/H8x6, 360/H12x3, 512/H16x15'
    assert str(b.plans['layers.3']) == '256/H8x4, 360/H12x2, 512/H16x2, 720/H24x2, 1024/H32x0'
    # stages 1-2 are timm's own
    assert [len(b.layers[i].blocks) for i in range(4)] == [2, 2, 24, 10]
    assert not isinstance(b.layers[0].blocks, Steps) and isinstance(b.layers[3].blocks, Steps)


def test_swin_blocks_follow_their_step():
    m = StepsSwinTransformer(depths=(2, 2, 6, 2), device='meta')
    for stage in m.layers[2:]:
        plan = stage.blocks.plan
        for blk, w, h in zip(stage.blocks, plan.block_widths(), plan.block_heads()):
            assert blk.dim == w and blk.attn.num_heads == h
            assert blk.attn.relative_position_bias_table.shape == ((2 * 7 - 1) ** 2, h)
            assert blk.input_resolution == stage.output_resolution
        assert stage.blocks.dim == -1


def test_swin_shifted_windows_alternate_along_the_real_sequence():
    m = StepsSwinTransformer(depths=(2, 2, 6, 2), device='meta')
    stage3 = list(m.layers[2].blocks)
    assert [b.shift_size for b in stage3] == [(0, 0), (3, 3)] * 6
    assert [b.dim for b in stage3[6:12]] == [272, 272, 272, 384, 384, 384]  # 272: W SW W, 384: SW W SW
    for b in stage3:
        assert (b.attn_mask is not None) == any(b.shift_size)
    # stage 4 at 224: the 7x7 window covers the 7x7 map, so timm does not shift (as in Swin-T)
    assert all(b.shift_size == (0, 0) for b in m.layers[3].blocks)
    # with always_partition the rule shows in stage 4 too
    m = StepsSwinTransformer(depths=(2, 2, 6, 2), always_partition=True, device='meta')
    assert [b.shift_size for b in m.layers[3].blocks] == [(0, 0), (3, 3)] * 5


def test_convnext_plans():
    t = StepsConvNeXt(depths=(3, 3, 9, 3), dims=(96, 192, 384, 768), device='meta')
    assert str(t.plans['stages.2']) == '192x6, 272x3, 384x6'
    assert str(t.plans['stages.3']) == '192x2, 272x1, 384x1, 544x1, 768x2'
    b = StepsConvNeXt(depths=(3, 3, 27, 3), dims=(128, 256, 512, 1024), device='meta')
    assert str(b.plans['stages.2']) == '256x6, 360x3, 512x24'
    assert str(b.plans['stages.3']) == '256x2, 360x1, 512x1, 728x1, 1024x2'
    for stage in b.stages[2:]:
        assert stage.blocks.dim == 1
        for blk, w in zip(stage.blocks, stage.blocks.plan.block_widths()):
            assert isinstance(blk, ConvNeXtBlock) and blk.conv_dw.in_channels == w and blk.conv_dw.groups == w


# ---- timm API on the full-size models ----

@pytest.mark.parametrize('name', [n for n, _ in SWIN + CONVNEXT])
def test_create_model_options(name):
    """Every full-size entrypoint takes timm's options (built on the meta device: structure only)."""
    m = timm.create_model(name, pretrained=False, num_classes=0, device='meta')
    assert m.num_classes == 0 and m.num_features in (768, 1024)
    assert m.pretrained_cfg['paper_ids'] == 'arXiv:2511.14329'
    m = timm.create_model(name, global_pool='', in_chans=1, num_classes=10, device='meta')
    assert m.in_chans == 1 and m.num_classes == 10
    assert m.get_submodule(m.pretrained_cfg['first_conv']).in_channels == 1
    f = timm.create_model(name, features_only=True, device='meta')
    assert f.feature_info.reduction() == [4, 8, 16, 32]
    assert f.feature_info.channels() == [m.num_features // 8, m.num_features // 4, m.num_features // 2, m.num_features]


@pytest.mark.parametrize('name', [SWIN[0][0], CONVNEXT[0][0]])
def test_drop_path_spread_over_real_sequence(name):
    m = timm.create_model(name, drop_path_rate=0.2, device='meta')
    if 'swin' in name:
        rates = [getattr(b.drop_path1, 'drop_prob', 0.) for b in m.modules() if isinstance(b, SwinTransformerBlock)]
        assert len(rates) == count_blocks(m) == 26
    else:
        rates = [getattr(b.drop_path, 'drop_prob', 0.) for b in m.modules() if isinstance(b, ConvNeXtBlock)]
        assert len(rates) == count_blocks(m) == 28
    assert rates[0] == 0. and rates[-1] == pytest.approx(0.2)
    assert rates == sorted(rates) and len(set(rates)) == len(rates)


# ---- what differs from the shared contract ----

@pytest.mark.parametrize('name', TINY)
def test_converted_stages_checkpoint_block_by_block(name):
    """timm's stage checkpoints its blocks as a plain sequence, which would skip the trunk's split and concat."""
    m = tiny(name)
    m.set_grad_checkpointing(True)
    stages = m.layers if 'swin' in name else m.stages
    assert [s.grad_checkpointing for s in stages] == [True, True, False, False]
    assert [s.blocks.grad_checkpointing for s in stages[2:]] == [True, True]


def test_swin_default_features_are_nhwc():
    m = timm.create_model('test_steps_swin', features_only=True)
    assert m.feature_info.reduction() == [4, 8, 16, 32]
    with torch.no_grad():
        feats = m(torch.randn(2, 3, SIZE, SIZE))
    assert [f.shape[-1] for f in feats] == m.feature_info.channels()  # NHWC, as timm's Swin features
    assert [SIZE // f.shape[1] for f in feats] == m.feature_info.reduction()


@pytest.mark.parametrize('name', TINY)
def test_group_matcher_one_group_per_trunk_block(name):
    m = tiny(name)
    groups = group_parameters(m, m.group_matcher(coarse=False))
    trunk = 'layers.2.blocks.' if 'swin' in name else 'stages.2.blocks.'
    block_groups = [sorted({n[len(trunk):].split('.')[0] for n in names if n.startswith(trunk)})
                    for names in groups.values()]
    assert [g for g in block_groups if g] == [[str(i)] for i in range(5)]  # each its own group, in execution order
    assert len(group_parameters(m, m.group_matcher(coarse=True))) == 6  # stem, 4 stages, head


def test_no_weight_decay_swin():
    m = tiny('test_steps_swin')
    nwd = m.no_weight_decay()
    tables = {n for n, _ in m.named_parameters() if n.endswith('relative_position_bias_table')}
    assert tables and tables == nwd
    assert any(n.startswith('layers.3.blocks.') for n in nwd)


def test_default_cfgs():
    for name in [n for n, _ in SWIN + CONVNEXT]:
        cfg = timm.get_pretrained_cfg(name)
        assert cfg.paper_ids == 'arXiv:2511.14329' and cfg.num_classes == 1000 and cfg.input_size == (3, 224, 224)


@pytest.mark.parametrize('output_stride', [16, 8])
def test_convnext_output_stride_matches_the_baseline(output_stride):
    """Dilated stages: features_only strides and shapes equal timm's ConvNeXt-T (counted on the meta device)."""
    kw = dict(features_only=True, output_stride=output_stride, device='meta')
    steps, base = timm.create_model('steps_convnext_tiny', **kw), timm.create_model('convnext_tiny', **kw)
    assert steps.feature_info.reduction() == base.feature_info.reduction()
    x = torch.zeros(1, 3, 224, 224, device='meta')
    assert [f.shape for f in steps(x)] == [f.shape for f in base(x)]
    full = timm.create_model('steps_convnext_tiny', output_stride=output_stride, device='meta')
    ref = timm.create_model('convnext_tiny', output_stride=output_stride, device='meta')
    for i in (2, 3):
        expected = ref.stages[i].blocks[-1].conv_dw.dilation
        assert all(b.conv_dw.dilation == expected for b in full.stages[i].blocks)


def test_convnext_output_stride_16_forward(one_thread):
    m = tiny('test_steps_convnext', features_only=True, output_stride=16).eval()
    assert m.feature_info.reduction() == [4, 8, 16, 16]
    with torch.no_grad():
        feats = m(torch.randn(2, 3, SIZE, SIZE))
    assert [tuple(f.shape[1:]) for f in feats] == [(8, 16, 16), (16, 8, 8), (32, 4, 4), (64, 4, 4)]
    assert all(torch.isfinite(f).all() for f in feats)


# ---- Swin's dynamic-size options ----

def test_swin_set_input_size_updates_every_block():
    torch.manual_seed(0)
    m = tiny('test_steps_swin').eval()
    m.set_input_size(img_size=(96, 96))
    out = m(torch.randn(1, 3, 96, 96))
    assert out.shape == (1, 5)
    stage3 = m.layers[2]
    assert stage3.output_resolution == (6, 6)
    for blk in stage3.blocks:
        assert blk.input_resolution == (6, 6)
        if any(blk.shift_size):
            assert blk.attn_mask.shape[0] == (6 // blk.window_size[0]) * (6 // blk.window_size[1])


@pytest.mark.parametrize('kwargs', [dict(dynamic_img_size=True), dict(strict_img_size=False, always_partition=True)])
def test_swin_dynamic_img_size(kwargs):
    torch.manual_seed(0)
    m = tiny('test_steps_swin', **kwargs).eval()
    assert all(b.dynamic_mask for b in m.modules() if isinstance(b, SwinTransformerBlock))
    with torch.no_grad():
        assert m(torch.randn(1, 3, 96, 80)).shape == (1, 5)
        ref = m(torch.randn(1, 3, SIZE, SIZE))
    assert torch.isfinite(ref).all()


def test_swin_dynamic_mask_equals_static_mask():
    """A model with masks built per forward gives the same output as one with precomputed masks."""
    torch.manual_seed(0)
    static = tiny('test_steps_swin').eval()
    dynamic = tiny('test_steps_swin', dynamic_img_size=True).eval()
    dynamic.load_state_dict(static.state_dict())
    x = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        torch.testing.assert_close(dynamic(x), static(x))


# ---- bad input ----

def test_swin_heads_must_divide_width():
    with pytest.raises(ValueError, match=r'stage 3 .*6 heads do not divide width 272'):
        timm.create_model('steps_swin_tiny_patch4_window7_224', step_heads=(None, None, {272: 6}, None))
    with pytest.raises(ValueError, match='heads do not divide the trunk width'):
        tiny('test_steps_swin', num_heads=(1, 2, 3, 8))


def test_swin_img_size_must_be_a_multiple_of_the_patch():
    with pytest.raises(ValueError, match=r'image size \(226, 226\) is not divisible by the patch size \(4, 4\)'):
        timm.create_model('steps_swin_tiny_patch4_window7_224', img_size=226)
    # a dynamic-size model takes any multiple of the patch size
    m = tiny('test_steps_swin', img_size=66, dynamic_img_size=True)
    assert m(torch.randn(1, 3, 68, 72)).shape == (1, 5)


def test_swin_fixed_size_rejects_other_inputs():
    m = tiny('test_steps_swin')
    with pytest.raises(ValueError, match=r'does not match the fixed image size \(64, 64\)'):
        m(torch.randn(1, 3, 96, 96))


def test_bad_stage_arguments():
    with pytest.raises(ValueError, match='one entry per stage'):
        tiny('test_steps_swin', num_steps=(1, 3, 3))
    with pytest.raises(ValueError, match='head_dim'):
        tiny('test_steps_swin', head_dim=8)
    with pytest.raises(ValueError, match=r'stage 3 .*cannot move'):
        tiny('test_steps_convnext', steps_move=(0, 0, 4, 1))
    with pytest.raises(ValueError, match='one entry for each of the 4 stages'):
        tiny('test_steps_convnext', depths=(1, 1, 3))
