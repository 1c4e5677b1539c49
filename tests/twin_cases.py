"""Building a generic twin family's tiny case, shared by tests/test_generic_twins.py and tests/test_families_*.py."""
import torch

from stepsnet.models.generic_families import family_of
from stepsnet.models.twins import baseline_args


def build_pair(cases, family_name: str, **changes):
    """(baseline, twin, input) of ``cases[family_name]`` = (timm name, overrides, input size), with ``changes`` over
    its overrides (Steps ones included), both built by the family's own timm builder from the same seed."""
    name, tiny, size = cases[family_name]
    family = family_of(name)
    args = {**baseline_args(name)[1], **tiny, **changes}
    steps = {k: args.pop(k) for k in ('num_steps', 'steps_move') if k in args}
    torch.manual_seed(0)
    base = getattr(family.module, family.builder)(name, pretrained=False, **args)
    twin = family.create(name, pretrained=False, **args, **steps)
    return base, twin, torch.randn(2, 3, size, size)


def check_forward_intermediates(twin, x):
    """timm's ``forward_intermediates`` of ``twin`` in eval mode: its final state gives ``twin(x)`` through
    ``forward_head``; returns the intermediates."""
    twin.eval()
    with torch.no_grad():
        final, feats = twin.forward_intermediates(x)
        assert torch.allclose(twin.forward_head(final), twin(x), atol=1e-5)
    return feats
