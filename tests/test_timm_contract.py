"""The timm contract, checked on every tiny ``test_steps_*`` variant (one per family and block type).

What differs between families (plans, shifted windows, NHWC features, dynamic sizes, parity) is tested in
test_models.py (ResNet, DeiT) and test_swin_convnext.py (Swin, ConvNeXt).
"""
import pytest
import timm
import torch
from conftest import create_tiny, drop_path_rates, tiny_input_size
from timm.models import group_parameters

import stepsnet  # noqa: F401  (registers the models)
from stepsnet.analysis.complexity import count_blocks
from stepsnet.steps import Steps

TINY = timm.list_models('test_steps_*')


def _input(name, batch=2, chans=3):
    size = tiny_input_size(name)
    return torch.randn(batch, chans, size, size)


def test_every_family_has_a_tiny_variant_named_for_timm_filters():
    # timm's own test suite picks per-family options by name ('resnet', 'vit', 'swin', 'convnext')
    assert TINY == ['test_steps_convnext', 'test_steps_resnet', 'test_steps_resnet_bottleneck', 'test_steps_swin',
                    'test_steps_vit']


@pytest.mark.parametrize('name', TINY)
def test_default_cfg(name):
    cfg = timm.get_pretrained_cfg(name)
    assert cfg.paper_ids == 'arXiv:2511.14329' and cfg.num_classes == 1000
    assert cfg.input_size == (3, tiny_input_size(name), tiny_input_size(name))


@pytest.mark.parametrize('name', TINY)
def test_forward_backward_every_parameter(name, one_thread):
    torch.manual_seed(0)
    m = create_tiny(name)
    out = m(_input(name))
    assert out.shape == (2, 5)
    out.square().sum().backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


@pytest.mark.parametrize('name', TINY)
def test_grad_checkpointing_leaves_output_and_gradients_unchanged(name, one_thread):
    torch.manual_seed(0)
    m = create_tiny(name, drop_path_rate=0.)  # training mode: stochastic depth would differ between the runs
    x = _input(name)
    ref = m(x)
    ref.sum().backward()
    grads = {n: p.grad.clone() for n, p in m.named_parameters()}
    m.zero_grad()
    m.set_grad_checkpointing(True)
    trunks = [s for s in m.modules() if isinstance(s, Steps)]
    assert trunks and all(s.grad_checkpointing for s in trunks)
    out = m(x)
    out.sum().backward()
    torch.testing.assert_close(out, ref)
    for n, p in m.named_parameters():
        torch.testing.assert_close(p.grad, grads[n], msg=n)
    m.set_grad_checkpointing(False)
    assert not any(s.grad_checkpointing for s in trunks)


@pytest.mark.parametrize('name', TINY)
def test_features_only_matches_feature_info(name, one_thread):
    m = timm.create_model(name, features_only=True, feature_cls='getter')
    size = tiny_input_size(name)
    with torch.no_grad():
        feats = m(_input(name))
    assert [f.shape[1] for f in feats] == m.feature_info.channels()  # the getter gives NCHW for every family
    assert [size // f.shape[-1] for f in feats] == m.feature_info.reduction()


@pytest.mark.parametrize('name', TINY)
def test_forward_intermediates_and_prune(name, one_thread):
    torch.manual_seed(0)
    m = create_tiny(name).eval()
    x = _input(name)
    size = tiny_input_size(name)
    with torch.no_grad():
        final, inter = m.forward_intermediates(x)
        torch.testing.assert_close(final, m.forward_features(x))
        assert [t.shape[1] for t in inter] == [info['num_chs'] for info in m.feature_info]
        assert [size // t.shape[-1] for t in inter] == [info['reduction'] for info in m.feature_info]
        last = len(m.feature_info) - 2
        m.prune_intermediate_layers([last], prune_head=True)
        pruned = m.forward_intermediates(x, indices=[last], intermediates_only=True)
    torch.testing.assert_close(pruned[0], inter[last])
    assert m.num_classes == 0


@pytest.mark.parametrize('name', TINY)
def test_head_api(name, one_thread):
    m = create_tiny(name)
    x = _input(name)
    feats = m.forward_features(x)
    assert m.forward_head(feats, pre_logits=True).shape == (2, m.num_features)
    assert m.get_classifier().out_features == 5
    m.reset_classifier(7)
    assert m(x).shape == (2, 7) and m.num_classes == 7
    m.reset_classifier(0)
    assert m(x).shape == (2, m.num_features)


@pytest.mark.parametrize('name', TINY)
def test_no_classifier_no_pooling(name, one_thread):
    m = create_tiny(name, num_classes=0, global_pool='').eval()
    x = _input(name, batch=1)
    with torch.no_grad():
        assert m(x).shape == m.forward_features(x).shape


@pytest.mark.parametrize('name', TINY)
def test_in_chans_and_num_classes(name, one_thread):
    m = create_tiny(name, in_chans=1, num_classes=3)
    assert m.in_chans == 1 and m(_input(name, batch=1, chans=1)).shape == (1, 3)
    assert m.get_submodule(m.pretrained_cfg['first_conv']).in_channels == 1


@pytest.mark.parametrize('name', TINY)
def test_group_matcher_covers_and_orders_blocks(name):
    m = create_tiny(name)
    groups = group_parameters(m, m.group_matcher(coarse=False))
    assert {n for names in groups.values() for n in names} == {n for n, _ in m.named_parameters()}
    assert len(groups) >= count_blocks(m)  # at least one group per residual block
    first = next(iter(groups.values()))
    assert any(n.startswith(('conv1', 'stem', 'patch_embed', 'cls_token', 'pos_embed')) for n in first)
    assert len(group_parameters(m, m.group_matcher(coarse=True))) <= len(groups)


@pytest.mark.parametrize('name', TINY)
def test_no_weight_decay_is_a_set(name):
    m = create_tiny(name)
    assert isinstance(m.no_weight_decay() if hasattr(m, 'no_weight_decay') else set(), set)


@pytest.mark.parametrize('name', TINY)
def test_drop_path_spread_over_the_real_block_sequence(name):
    rates = drop_path_rates(create_tiny(name, drop_path_rate=0.2))
    assert len(rates) == count_blocks(create_tiny(name))
    assert rates[0] == 0. and rates[-1] == pytest.approx(0.2)
    assert rates == sorted(rates) and len(set(rates)) == len(rates)


@pytest.mark.parametrize('name', TINY)
def test_torch_compile(name, one_thread):
    """Dynamo captures the Steps trunk in one graph. The aot_eager backend keeps the test fast on a CPU runner:
    Inductor's C++ code generation takes minutes for these many small blocks on 2 cores (it works, it is slow)."""
    torch.manual_seed(0)
    m = create_tiny(name).eval()
    x = _input(name)
    with torch.no_grad():
        ref = m(x)
        out = torch.compile(m, backend='aot_eager', fullgraph=True)(x)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
