"""skip_meta_init: a model built on the meta device without its initialisers is the same model, shape for shape."""
import timm
import torch

import stepsnet  # noqa: F401  (registers the models)
from stepsnet.analysis.complexity import count_macs, count_params
from stepsnet.utils.meta import VALUE_ONLY_INPLACE, skip_meta_init


def _signature(model):
    return ([(k, tuple(v.shape), v.dtype) for k, v in model.state_dict().items()],
            [(k, p.requires_grad) for k, p in model.named_parameters()])


def test_models_built_without_initialisers_are_the_same_models():
    for name in ('steps_swin_tiny_patch4_window7_224', 'steps_convnext_tiny', 'deit_small_patch16_224', 'resnet50'):
        plain = timm.create_model(name, device='meta')
        with skip_meta_init():
            fast = timm.create_model(name, device='meta')
        assert _signature(fast) == _signature(plain), name
        assert count_params(fast) == count_params(plain)
        assert count_macs(fast) == count_macs(plain)


def test_tensors_with_data_are_untouched():
    x = torch.zeros(3)
    with skip_meta_init():
        x.add_(2).mul_(3)
        torch.nn.init.uniform_(y := torch.empty(4), 5., 6.)
        m = torch.ones(3, device='meta')
        assert m.mul_(2) is m and m.uniform_() is m
    assert x.tolist() == [6., 6., 6.] and bool(((y >= 5) & (y <= 6)).all())


def test_only_value_only_methods_are_listed():
    # a method that changes shape or storage (resize_, t_, set_, squeeze_) must still run on meta tensors
    assert not VALUE_ONLY_INPLACE & {'resize_', 't_', 'transpose_', 'squeeze_', 'unsqueeze_', 'set_', 'as_strided_',
                                     'requires_grad_'}
    with skip_meta_init():
        m = torch.empty(2, 3, device='meta')
        m.t_()
        m.requires_grad_()
    assert m.shape == (3, 2) and m.requires_grad
