"""Tiny cases of the generic twin families of :mod:`stepsnet.models._families_hierarchical`.

``TINY`` maps a family name to (timm name, overrides that shrink it, input size); tests/test_generic_twins.py runs
its checks on every entry (forward and backward, the one-step twin is the baseline) and counts one real
configuration of each family on the meta device against its row of the coverage table (parity).
The tests below check what is particular to these families: shifted windows and alternating attention types along
the real block sequence, per-block position tables at each step's head count, the norms Swin V2 CR places by
position, and timm's feature APIs.
"""
import pytest
import torch
import torch.nn as nn
from twin_cases import build_pair, check_forward_intermediates

STAGED = dict(depths=(1, 1, 3, 2))
WIDTHS = dict(embed_dims=(16, 32, 64, 128), num_heads=(1, 2, 4, 8))
# 64x64 inputs: stage maps 16, 8, 4, 2; windows of 2 so that stage 3 (4x4) shifts and stage 4 (2x2) does not
TINY = {
    'SwinV2': ('swinv2_tiny_window8_256', dict(STAGED, img_size=64, embed_dim=16, num_heads=(1, 2, 4, 8),
                                              window_size=2), 64),
    'SwinV2-CR': ('swinv2_cr_tiny_224', dict(STAGED, img_size=64, embed_dim=16, num_heads=(1, 2, 4, 8),
                                            window_size=2), 64),
    'FocalNet': ('focalnet_tiny_srf', dict(STAGED, embed_dim=16), 64),
    'PVT-v2': ('pvt_v2_b1', dict(STAGED, **WIDTHS), 64),
    'Twins': ('twins_svt_small', dict(STAGED, **WIDTHS, wss=(2, 2, 2, 2), img_size=64), 64),
    'NesT': ('nest_tiny', dict(img_size=32, embed_dims=(16, 32, 64), num_heads=(1, 2, 4), depths=(1, 2, 3)), 32),
    'TinyViT': ('tiny_vit_5m_224', dict(STAGED, **WIDTHS, window_sizes=(2, 2, 2, 2)), 64),
    'Visformer': ('visformer_tiny', dict(img_size=64, init_channels=8, embed_dim=64, depth=(1, 2, 3), num_heads=2),
                  64),
}


def _build(family_name, **changes):
    return build_pair(TINY, family_name, **changes)


def _shapes(out):
    """Shapes of the tensors in a (nested) feature output, in order (a stage may return a tuple)."""
    if isinstance(out, torch.Tensor):
        return [tuple(out.shape)]
    if isinstance(out, dict):
        out = list(out.values())
    return [s for o in out for s in _shapes(o)]


def _trunks(model):
    from stepsnet.models.generic_twins import TimmSteps
    return {n: m for n, m in model.named_modules() if isinstance(m, TimmSteps)}


def test_swinv2_shifts_alternate_along_the_real_sequence(one_thread):
    """Stage 3 (4x4 map, windows of 2) shifts every second block of the trunk, across step boundaries; stage 4
    (2x2 map, one window) shifts none, as timm's blocks decide for a window that covers the map."""
    _, twin, _ = _build('SwinV2')
    stage3, stage4 = twin.layers[2].blocks, twin.layers[3].blocks
    assert stage3.plan.num_steps == 3 and len(stage3) > 3
    assert [any(b.shift_size) for b in stage3.children()] == [i % 2 == 1 for i in range(len(stage3))]
    assert not any(any(b.shift_size) for b in stage4.children())
    for b in stage3.children():  # a continuous position bias per block, one output per head of its step
        assert b.attn.cpb_mlp[-1].out_features == b.num_heads == b.attn.logit_scale.shape[0]
        assert b.dim % b.num_heads == 0
        assert torch.count_nonzero(b.norm1.weight) == 0  # residual post-norms start at zero, as in timm


def test_swinv2_cr_places_its_norms_by_position(one_thread):
    """The last stage ends with the network's final norm (on the trunk's last block, at the full width); with
    ``extra_norm_period`` every p-th block of the real sequence has one."""
    _, twin, x = _build('SwinV2-CR')
    last = twin.stages[-1].blocks
    norms = [not isinstance(b.norm3, nn.Identity) for b in last.children()]
    assert norms == [False] * (len(last) - 1) + [True]
    assert list(last.children())[-1].dim == last.channels
    _, periodic, _ = _build('SwinV2-CR', depths=(1, 1, 5, 2), extra_norm_period=2)
    stage3 = periodic.stages[2].blocks
    assert [not isinstance(b.norm3, nn.Identity) for b in stage3.children()] == \
        [(i + 1) % 2 == 0 for i in range(len(stage3))]
    with pytest.raises(ValueError, match='final norm'):
        _build('SwinV2-CR', num_steps=(1, 1, 1, 3), steps_move=(0, 0, 0, 2))


def test_twins_alternate_local_and_global_attention(one_thread):
    """SVT alternates locally grouped (even blocks) and global sub-sampled attention along the real sequence."""
    from timm.models.twins import GlobalSubSampleAttn, LocallyGroupedAttn
    _, twin, _ = _build('Twins')
    trunk = twin.blocks[2]
    kinds = [type(b.attn) for b in trunk.children()]
    assert kinds == [LocallyGroupedAttn if i % 2 == 0 else GlobalSubSampleAttn for i in range(len(trunk))]


def test_tiny_vit_keeps_its_conv_stage_and_biases_per_head(one_thread):
    from stepsnet.models.generic_twins import TimmSteps
    _, twin, _ = _build('TinyViT')
    assert not isinstance(twin.stages[0].blocks, TimmSteps)
    for b in twin.stages[3].blocks.children():
        assert b.attn.attention_biases.shape == (b.num_heads, 4)  # one table per head of the step, 2x2 windows


@pytest.mark.parametrize('family_name', sorted(TINY))
def test_forward_intermediates_and_features_only(family_name, one_thread):
    """timm's feature APIs run through the trunks (their loops see per-block views) at the baseline's widths."""
    base, twin, x = _build(family_name)
    feats = check_forward_intermediates(twin, x)
    base.eval()
    with torch.no_grad():
        assert _shapes(feats) == _shapes(base.forward_intermediates(x)[1])
    base, features, x = _build(family_name, features_only=True)
    assert _trunks(features)
    with torch.no_grad():
        assert _shapes(features(x)) == _shapes(base(x))
