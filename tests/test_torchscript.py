"""TorchScript: every registered Steps model scripts and gives its eager output."""
import warnings

import pytest
import timm
import torch

import stepsnet  # noqa: F401  (registers the models)

# Full-size models run at a small input where the family takes any size (ResNet, ConvNeXt) or is built for one
# (DeiT); Swin runs at its native 224x224. Scripted graphs run without the profiling optimiser, whose first
# calls recompile and take seconds per model; the compiled code is the same.
SMALL_INPUT = {'resnet': (64, {}), 'convnext': (64, {}), 'deit': (64, dict(img_size=64)), 'swin': (224, {})}


def _script(model):
    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', message='.*torch.jit.script.*deprecated', category=FutureWarning)
        return torch.jit.script(model)


def _max_abs_diff(model, size):
    torch.manual_seed(0)
    x = torch.randn(2, 3, size, size)
    scripted = _script(model)
    with torch.no_grad(), torch.jit.optimized_execution(False):
        return (scripted(x) - model(x)).abs().max().item()


@pytest.mark.parametrize('name', timm.list_models('test_steps_*'))
def test_tiny_models_script_and_match_eager(name, one_thread):
    torch.manual_seed(0)
    model = timm.create_model(name).eval()
    assert _max_abs_diff(model, model.pretrained_cfg['input_size'][-1]) < 1e-5


@pytest.mark.parametrize('name', timm.list_models('steps_*'))
def test_full_size_models_script_and_match_eager(name, one_thread):
    family = next(f for f in SMALL_INPUT if f in name)
    size, kwargs = SMALL_INPUT[family]
    torch.manual_seed(0)
    model = timm.create_model(name, **kwargs).eval()
    assert _max_abs_diff(model, size) < 1e-4


def test_scripted_trunk_checks_its_input():
    model = _script(timm.create_model('test_steps_vit').eval())
    with pytest.raises(torch.jit.Error, match='Steps expected 64 channels on dim -1'):
        model.blocks(torch.randn(1, 5, 32))


def test_scripted_model_keeps_parameter_names():
    model = timm.create_model('test_steps_swin').eval()
    scripted = _script(model)
    assert [n for n, _ in scripted.named_parameters()] == [n for n, _ in model.named_parameters()]
    # the names of a plain block sequence, as before the trunk became scriptable
    assert 'blocks.7.attn.qkv.weight' in timm.create_model('steps_deit_small_patch16_224', device='meta').state_dict()
    assert 'layer3.1.16.conv3.weight' in timm.create_model('steps_resnet50', device='meta').state_dict()
