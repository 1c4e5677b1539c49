"""Steps-ResNet and Steps-DeiT: paper parity (Table 1) and citizenship in timm."""
import pytest
import timm
import torch
from timm.models import group_parameters
from timm.models.resnet import BasicBlock, Bottleneck

import stepsnet  # noqa: F401  (registers the models)
from stepsnet.analysis.complexity import PAPER_TABLE1, count_blocks
from stepsnet.steps import Steps

PAIRS = [
    ('steps_resnet18', 'resnet18'),
    ('steps_resnet34', 'resnet34'),
    ('steps_resnet50', 'resnet50'),
    ('steps_deit_tiny_patch16_224', 'deit_tiny_patch16_224'),
    ('steps_deit_small_patch16_224', 'deit_small_patch16_224'),
    ('steps_deit_base_patch16_224', 'deit_base_patch16_224'),
]
# tiny variants and the input size they take
TINY = [('test_steps_resnet', 64), ('test_steps_resnet_bottleneck', 64), ('test_steps_vit', 32)]


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


def tiny(name, **kwargs):
    kwargs.setdefault('num_classes', 5)
    if 'resnet' in name:
        kwargs.setdefault('zero_init_last', False)  # zero-init last BN would zero the branch gradients
    return timm.create_model(name, **kwargs)


@pytest.mark.parametrize('name,size', TINY)
def test_forward_backward_every_parameter(name, size):
    torch.manual_seed(0)
    m = tiny(name)
    out = m(torch.randn(2, 3, size, size))
    assert out.shape == (2, 5)
    out.square().sum().backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


@pytest.mark.parametrize('name,size', TINY)
def test_grad_checkpointing_leaves_output_unchanged(name, size):
    torch.manual_seed(0)
    m = tiny(name)
    x = torch.randn(2, 3, size, size)
    ref = m(x)
    ref.sum().backward()
    grads = {n: p.grad.clone() for n, p in m.named_parameters()}
    m.zero_grad()
    m.set_grad_checkpointing(True)
    assert all(s.grad_checkpointing for s in m.modules() if isinstance(s, Steps))
    out = m(x)
    out.sum().backward()
    torch.testing.assert_close(out, ref)
    for n, p in m.named_parameters():
        torch.testing.assert_close(p.grad, grads[n], msg=n)


@pytest.mark.parametrize('name,size', TINY)
def test_features_only_matches_feature_info(name, size):
    m = timm.create_model(name, features_only=True)
    feats = m(torch.randn(2, 3, size, size))
    assert [f.shape[1] for f in feats] == m.feature_info.channels()
    assert [size // f.shape[-1] for f in feats] == m.feature_info.reduction()
    if 'resnet' in name:
        assert m.feature_info.reduction() == [2, 4, 8, 16, 32]


@pytest.mark.parametrize('name,size', TINY)
def test_forward_intermediates_final_equals_forward_features(name, size):
    m = tiny(name).eval()
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        final, inter = m.forward_intermediates(x)
        torch.testing.assert_close(final, m.forward_features(x))
    assert len(inter) == len(m.feature_info)
    assert all(t.shape[1] == info['num_chs'] for t, info in zip(inter, m.feature_info))


def test_vit_prune_intermediate_layers():
    m = tiny('test_steps_vit').eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        _, inter = m.forward_intermediates(x, indices=[5], norm=False)
        m.prune_intermediate_layers([5], prune_head=True)
        assert len(m.blocks) == 6 and m.num_classes == 0
        pruned = m.forward_intermediates(x, indices=[5], intermediates_only=True)
    torch.testing.assert_close(pruned[0], inter[0])


@pytest.mark.parametrize('name', ['steps_resnet34', 'steps_deit_small_patch16_224'])
def test_drop_path_spread_over_real_sequence(name):
    m = timm.create_model(name, drop_path_rate=0.2)
    if 'resnet' in name:
        blocks = [b for b in m.modules() if isinstance(b, (BasicBlock, Bottleneck))]
        rates = [b.drop_path.drop_prob if b.drop_path is not None else 0. for b in blocks]
    else:
        blocks = list(m.blocks)
        rates = [getattr(b.drop_path1, 'drop_prob', 0.) for b in blocks]
    assert len(blocks) == count_blocks(m) == 34 if 'resnet' in name else 24
    assert rates[0] == 0. and rates[-1] == pytest.approx(0.2)
    assert rates == sorted(rates) and len(set(rates)) == len(rates)


@pytest.mark.parametrize('name,size', TINY)
def test_head_api(name, size):
    m = tiny(name)
    x = torch.randn(2, 3, size, size)
    feats = m.forward_features(x)
    pre = m.forward_head(feats, pre_logits=True)
    assert pre.shape == (2, m.num_features)
    m.reset_classifier(7)
    assert m(x).shape == (2, 7) and m.num_classes == 7
    m.reset_classifier(0)
    assert m(x).shape == (2, m.num_features)
    assert isinstance(m.no_weight_decay(), set) if hasattr(m, 'no_weight_decay') else True


@pytest.mark.parametrize('name,size', TINY)
def test_group_matcher_orders_blocks(name, size):
    m = tiny(name)
    groups = group_parameters(m, m.group_matcher(coarse=False))
    covered = {n for names in groups.values() for n in names}
    assert covered == {n for n, _ in m.named_parameters()}
    # blocks of the Steps trunk come after the stem and in execution order
    order = [names for names in groups.values()]
    assert any('conv1' in n or 'patch_embed' in n for n in order[0])
    assert len(groups) >= count_blocks(m)
    if 'resnet' in name:  # coarse: one group per stage
        assert len(group_parameters(m, m.group_matcher(coarse=True))) == 6


def test_no_weight_decay_vit():
    assert {'pos_embed', 'cls_token'} <= tiny('test_steps_vit').no_weight_decay()


@pytest.mark.parametrize('name,size', [('test_steps_resnet', 64), ('test_steps_vit', 32)])
def test_torch_compile(name, size):
    torch.manual_seed(0)
    m = tiny(name).eval()
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        ref = m(x)
        compiled = torch.compile(m)
        out = compiled(x)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


def test_steps_input_channels_checked_in_model():
    m = tiny('test_steps_vit')
    with pytest.raises(ValueError, match='expected 64 channels'):
        m.blocks(torch.randn(1, 5, 32))
