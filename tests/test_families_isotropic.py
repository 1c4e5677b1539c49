"""Tiny cases of the generic twin families of :mod:`stepsnet.models._families_isotropic`.

``TINY`` maps a family name to (timm name, overrides that shrink it, input size); tests/test_generic_twins.py runs
its checks on every entry (forward and backward, the one-step twin is the baseline) and counts one real
configuration of each family on the meta device against its row of the coverage table (parity).
The tests here check what a family needs beyond those: the arguments timm passes to its blocks, the refusals, and
the blocks that differ along the trunk.
"""
import pytest
from timm.models.vitamin import VitCfg, VitConvCfg
from twin_cases import build_pair, check_forward_intermediates

from stepsnet.models.generic_twins import TimmSteps
from stepsnet.models.twins import build_twin

ISO = dict(img_size=32, patch_size=8, embed_dim=64, depth=4, num_heads=4)
TINY = {
    'XCiT': ('xcit_nano_12_p8_224', ISO, 32),
    'ViT-RelPos': ('vit_relpos_small_patch16_224', ISO, 32),
    'ViTamin': ('vitamin_small_224', dict(
        img_size=32, embed_dim=64, depth=4, num_heads=4,
        embed_cfg=VitCfg(embed_dim=(16, 32, 64), depths=(1, 1, 1), stem_width=16,
                         conv_cfg=VitConvCfg(norm_layer='layernorm2d', norm_eps=1e-6), head_type='1d')), 32),
    # ConViT's embed_dim is per head (width 16 x 4 heads); GPSA in the first 3 blocks, the class token enters at 3
    'ConViT': ('convit_tiny', dict(ISO, embed_dim=16, local_up_to_layer=3), 32),
    'PiT': ('pit_ti_224', dict(img_size=64, base_dims=(8, 8, 8), depth=(1, 4, 2), heads=(2, 4, 8)), 64),
    # the attention stage is 256 wide so that its 5 steps are distinct multiples of the head size (32)
    'FastViT': ('fastvit_sa12', dict(layers=(1, 1, 4, 2), embed_dims=(32, 64, 128, 256)), 64),
    'VOLO': ('volo_d1_224', dict(img_size=64, layers=(2, 2, 2, 2), embed_dims=(32, 64, 64, 64),
                                 num_heads=(2, 4, 4, 4)), 64),
    'Sequencer': ('sequencer2d_s', dict(layers=(2, 2, 2, 2), embed_dims=(32, 64, 64, 64),
                                        hidden_sizes=(8, 16, 16, 16)), 64),
}


def _pair(family_name: str, **extra):
    return build_pair(TINY, family_name, **extra)


def test_xcit_loop_passes_the_patch_grid(one_thread):
    """XCiT calls each block with the patch grid (``blk(x, Hp, Wp)``): the views pass it on, so timm's loop and
    forward_intermediates compute the trunk."""
    _, twin, x = _pair('XCiT')
    assert isinstance(twin.blocks, TimmSteps) and len(twin.cls_attn_blocks) == 2
    feats = check_forward_intermediates(twin, x)
    assert len(feats) == len(twin.blocks) == sum(twin.plans['blocks'].depths)
    assert feats[-1].shape == (2, 64, 4, 4)


def test_shared_relative_position_bias_is_refused():
    with pytest.raises(ValueError, match='shared by all blocks'):
        build_twin('vit_srelpos_small_patch16_224', device='meta')


def test_relpos_blocks_have_their_heads(one_thread):
    """Each step's blocks build their own relative position MLP for the step's head count."""
    _, twin, x = _pair('ViT-RelPos')
    plan = twin.plans['blocks']
    assert [b.attn.rel_pos.num_heads for b in twin.blocks.children()] == plan.block_heads()
    assert twin(x).shape == (2, 1000)


def test_vitamin_keeps_its_convolution_stem(one_thread):
    base, twin, x = _pair('ViTamin')
    shapes = {k: v.shape for k, v in base.patch_embed.state_dict().items()}
    assert shapes == {k: v.shape for k, v in twin.patch_embed.state_dict().items()}
    assert isinstance(twin.blocks, TimmSteps) and twin.plans['blocks'].num_steps == 3
    assert twin(x).shape == base(x).shape


def test_convit_keeps_plain_blocks_last_and_moves_the_class_token(one_thread):
    """The twin keeps as many plain self-attention blocks as the baseline, last, and the class token enters before
    the first of them."""
    base, twin, x = _pair('ConViT')
    gpsa = [b.use_gpsa for b in twin.blocks.children()]
    n = len(gpsa)
    assert n == sum(twin.plans['blocks'].depths) > len(base.blocks)
    plain = len(base.blocks) - base.local_up_to_layer
    assert gpsa == [True] * (n - plain) + [False] * plain
    assert twin.local_up_to_layer == n - plain
    feats = check_forward_intermediates(twin, x)
    # patch tokens only, at every block: the class token is stripped after it enters
    assert {f.shape[-1] * f.shape[-2] for f in feats} == {16}


def test_pit_converts_its_last_two_stages(one_thread):
    _, twin, x = _pair('PiT')
    steps = [twin.plans[f'transformers.{i}.blocks'].num_steps for i in range(3)]
    assert steps == [1, 3, 5]
    assert twin(x).shape == (2, 1000)


def test_fastvit_attention_keeps_its_head_size(one_thread):
    _, twin, _ = _pair('FastViT')
    plans = twin.plans
    assert plans['stages.2.blocks'].num_steps == 3 and plans['stages.3.blocks'].num_steps == 5
    assert all(w % 32 == 0 for w in plans['stages.3.blocks'].widths)
    for block in twin.stages[3].blocks.children():
        assert block.token_mixer.head_dim == 32


def test_volo_converts_every_stage_and_keeps_its_features(one_thread):
    base, twin, x = _pair('VOLO')
    assert sorted(twin.plans) == ['network.0', 'network.2', 'network.3', 'network.4']
    assert all(p.num_steps == 3 for p in twin.plans.values())
    assert twin.feature_info == base.feature_info
    feats = check_forward_intermediates(twin, x)
    assert [f.shape[1] for f in feats] == [32, 64, 64, 64]


def test_sequencer_hidden_size_follows_the_width(one_thread):
    _, twin, x = _pair('Sequencer')
    for i in range(4):
        for block in twin.stages[i].blocks.children():
            assert block.rnn_tokens.hidden_size * 4 == block.norm1.normalized_shape[0]
    assert twin(x).shape == (2, 1000)
