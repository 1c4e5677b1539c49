"""Dense readiness and export of all four families: feature pyramids at detection / segmentation sizes,
channels_last, ONNX (checked against onnxruntime) and FX tracing, on the tiny variants."""
import pytest
import timm
import torch
from timm.models._features_fx import create_feature_extractor

import stepsnet  # noqa: F401  (registers the models)
from stepsnet.onnx import check_onnx, export_onnx

# tiny variant, its native input size, and the extra kwargs that make it accept any size
FAMILIES = {
    'resnet': ('test_steps_resnet', 64, {}),
    'deit': ('test_steps_vit', 32, dict(dynamic_img_size=True)),
    'swin': ('test_steps_swin', 64, dict(dynamic_img_size=True)),
    'convnext': ('test_steps_convnext', 64, {}),
}
HIERARCHICAL = ['resnet', 'swin', 'convnext']
DENSE_SIZES = [(512, 512), (480, 640)]  # (height, width)


def _model(family, **kwargs):
    name, _, extra = FAMILIES[family]
    torch.manual_seed(0)
    return timm.create_model(name, **dict(extra, **kwargs)).eval()


@pytest.mark.parametrize('size', DENSE_SIZES, ids=lambda s: f'{s[0]}x{s[1]}')
@pytest.mark.parametrize('family', HIERARCHICAL)
def test_feature_pyramid_at_dense_sizes(family, size):
    m = _model(family, features_only=True, feature_cls='getter' if family == 'swin' else None)
    strides = m.feature_info.reduction()
    assert strides == ([2, 4, 8, 16, 32] if family == 'resnet' else [4, 8, 16, 32])
    h, w = size
    with torch.no_grad():
        feats = m(torch.randn(1, 3, h, w))
    assert [tuple(f.shape) for f in feats] == [
        (1, c, h // s, w // s) for c, s in zip(m.feature_info.channels(), strides)]


def test_swin_default_features_are_nhwc_like_timm():
    m = _model('swin', features_only=True)
    with torch.no_grad():
        feats = m(torch.randn(1, 3, 480, 640))
    assert [tuple(f.shape) for f in feats] == [
        (1, 480 // s, 640 // s, c) for c, s in zip(m.feature_info.channels(), m.feature_info.reduction())]


@pytest.mark.parametrize('size', [(64, 48), (96, 64)], ids=lambda s: f'{s[0]}x{s[1]}')
def test_deit_other_sizes_interpolate_position_embedding(size):
    h, w = size
    m = _model('deit')
    with torch.no_grad():
        assert m(torch.randn(2, 3, h, w)).shape == (2, 1000)
        feats = timm.create_model('test_steps_vit', features_only=True, dynamic_img_size=True).eval()(
            torch.randn(2, 3, h, w))
    assert all(f.shape == (2, m.embed_dim, h // 8, w // 8) for f in feats)
    # the model was built for 32x32: the position embedding is resampled, not extended
    assert m.pos_embed.shape[1] == 1 + (32 // 8) ** 2


@pytest.mark.parametrize('family', list(FAMILIES))
def test_channels_last(family):
    m = _model(family)
    size = 96 if family != 'deit' else 48
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        ref = m.forward_intermediates(x, intermediates_only=True)
        m = m.to(memory_format=torch.channels_last)
        out = m.forward_intermediates(x.contiguous(memory_format=torch.channels_last), intermediates_only=True)
    assert len(out) == len(ref)
    for a, b in zip(out, ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('family', list(FAMILIES))
def test_onnx_matches_pytorch(family, tmp_path):
    name, size, _ = FAMILIES[family]
    torch.manual_seed(0)
    m = timm.create_model(name).eval()
    path = export_onnx(m, tmp_path / f'{name}.onnx', input_size=(3, size, size), batch_size=2, atol=1e-4, rtol=1e-4)
    assert (tmp_path / f'{name}.onnx').is_file() and len(list(tmp_path.iterdir())) == 1  # no leftovers
    x = torch.randn(2, 3, size, size)
    assert check_onnx(m, path, x, atol=1e-4, rtol=1e-4) < 1e-4


def test_onnx_check_catches_a_mismatch(tmp_path):
    torch.manual_seed(0)
    m = timm.create_model('test_steps_resnet').eval()
    path = export_onnx(m, tmp_path / 'r.onnx', input_size=(3, 64, 64), dynamo=False)
    with torch.no_grad():
        m.fc.bias.add_(1.0)
    with pytest.raises(AssertionError, match='differ'):
        check_onnx(m, path, torch.randn(1, 3, 64, 64))
    with pytest.raises(ValueError, match='input_size must be'):
        export_onnx(m, tmp_path / 'bad.onnx', input_size=(64, 64))
    assert [p.name for p in tmp_path.iterdir()] == ['r.onnx']



@pytest.mark.parametrize('dynamo', [False, True])
def test_onnx_file_is_an_ordinary_file_and_the_export_is_quiet(dynamo, tmp_path, capsys):
    """The file gets the user's umask like any new file (not a temporary file's 0600); the TorchScript exporter's
    deprecation notices (asked for with dynamo=False) and the dynamo exporter's progress lines are not passed on."""
    import os
    import stat
    import warnings
    m = timm.create_model('test_steps_resnet').eval()
    old = os.umask(0o022)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            path = export_onnx(m, tmp_path / 'r.onnx', input_size=(3, 32, 32), dynamo=dynamo, check=False)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644 and os.listdir(tmp_path) == ['r.onnx']
    said = [str(w.message) for w in caught if issubclass(w.category, (DeprecationWarning, FutureWarning))]
    assert not [w for w in said if 'TorchScript' in w or 'will be removed' in w or 'jit.script' in w], said
    assert '[torch.onnx]' not in capsys.readouterr().out


def test_onnx_into_a_folder_that_cannot_be_written_names_the_folder(tmp_path, monkeypatch):
    import errno
    import tempfile

    from stepsnet.utils.checkpoint import StorageError

    def read_only(*args, dir=None, **kwargs):
        raise OSError(errno.EROFS, 'Read-only file system', f'{dir}/.m.onnx.abc.onnx')
    monkeypatch.setattr(tempfile, 'mkstemp', read_only)
    with pytest.raises(StorageError) as e:
        export_onnx(timm.create_model('test_steps_resnet'), tmp_path / 'm.onnx', input_size=(3, 32, 32), check=False)
    assert str(e.value) == f"cannot write '{tmp_path / 'm.onnx'}': the folder '{tmp_path}' is not writable (the file " \
                           "system is read-only)"

FX_NODES = {
    'resnet': ['act1', 'layer1', 'layer2', 'layer3', 'layer4'],
    'swin': ['layers.0', 'layers.1', 'layers.2', 'layers.3'],
    'convnext': ['stages.0', 'stages.1', 'stages.2', 'stages.3'],
}


@pytest.mark.parametrize('family', list(FAMILIES))
def test_fx_trace(family):
    """timm's FX feature extraction traces through the Steps trunks (split, blocks and concat become graph nodes)."""
    name, size, _ = FAMILIES[family]
    torch.manual_seed(0)
    m = timm.create_model(name).eval()
    x = torch.randn(2, 3, size, size)
    if family == 'deit':
        g = create_feature_extractor(m, return_nodes={'norm': 'out'})
        with torch.no_grad():
            torch.testing.assert_close(g(x)['out'], m.forward_features(x))
        assert any('cat' in str(n.target) for n in g.graph.nodes)
        return
    g = create_feature_extractor(m, return_nodes=FX_NODES[family])
    assert any('cat' in str(n.target) for n in g.graph.nodes)
    with torch.no_grad():
        traced = list(g(x).values())
        ref = m.forward_intermediates(x, intermediates_only=True)
    if family == 'swin':
        traced = [t.permute(0, 3, 1, 2) for t in traced]
    assert len(traced) == len(ref) == len(FX_NODES[family])
    for a, b in zip(traced, ref):
        torch.testing.assert_close(a, b)


# ---- fixed-size models ----

def test_fixed_size_models_reject_sizes_off_the_patch_grid():
    with pytest.raises(ValueError, match=r'image size \(36, 36\) is not divisible by the patch size \(8, 8\)'):
        timm.create_model('test_steps_vit', img_size=36)
    with pytest.raises(ValueError, match=r'image size \(230, 230\) is not divisible by the patch size \(16, 16\)'):
        timm.create_model('steps_deit_tiny_patch16_224', img_size=230, device='meta')
    with pytest.raises(ValueError, match=r'image size \(62, 62\) is not divisible by the patch size \(4, 4\)'):
        timm.create_model('test_steps_swin', img_size=62)
    # other sizes on the grid need a model built for them, or a dynamic-size one
    assert timm.create_model('test_steps_vit', img_size=40)(torch.randn(1, 3, 40, 40)).shape == (1, 1000)
