"""Activation checkpointing of the narrow steps: which blocks, same gradients, fewer saved activations."""
import pytest
import timm
import torch

import stepsnet.steps as steps_module
from stepsnet.models.steps_gpt import create_lm
from stepsnet.steps import Steps, set_step_checkpointing


def _saved_bytes(model, x):
    """Bytes of the tensors autograd keeps for the backward of one forward (shared storages counted once)."""
    seen = {}

    def pack(t):
        seen[(t.untyped_storage().data_ptr(), t.dtype)] = t.untyped_storage().nbytes()
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = model(x).float().pow(2).mean()
    return sum(seen.values()), loss


def test_first_steps_are_checkpointed_with_the_same_gradients(monkeypatch, one_thread):
    torch.manual_seed(0)
    model = timm.create_model('test_steps_vit', num_classes=10)
    trunk = model.blocks
    assert isinstance(trunk, Steps) and trunk.plan.depths == (4, 2, 2)
    x = torch.randn(2, 3, 32, 32)
    ref_bytes, loss = _saved_bytes(model, x)
    loss.backward()
    ref = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)

    assert set_step_checkpointing(model, 1) == 1
    assert [trunk.checkpointed(i) for i in range(len(trunk))] == [True] * 4 + [False] * 4
    calls = []
    real = steps_module.checkpoint
    monkeypatch.setattr(steps_module, 'checkpoint', lambda *a, **k: calls.append(1) or real(*a, **k))
    ckpt_bytes, loss = _saved_bytes(model, x)
    loss.backward()
    assert len(calls) == 4  # the four blocks of the first step
    assert ckpt_bytes < 0.85 * ref_bytes
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, ref[n], rtol=1e-5, atol=1e-6, msg=n)

    model.eval()
    calls.clear()
    with torch.no_grad():
        model(x)
    assert not calls  # inference never recomputes
    trunk.set_step_checkpointing(0)
    assert not any(trunk.checkpointed(i) for i in range(len(trunk)))


def test_the_last_step_and_baselines_are_left_alone():
    lm = create_lm('steps_gpt_tiny')
    set_step_checkpointing(lm, 5)  # more than the trunk has: every step but the last
    plan = lm.blocks.plan
    assert [lm.blocks.checkpointed(i) for i in range(len(lm.blocks))] == [plan.step_of(i) < plan.num_steps - 1
                                                       for i in range(plan.num_blocks)]
    assert set_step_checkpointing(create_lm('gpt_tiny'), 1) == 0
    with pytest.raises(ValueError, match=r'steps to checkpoint must be in \[0, 3\]'):
        lm.blocks.set_step_checkpointing(4)
    with pytest.raises(ValueError, match='must be >= 0, got -1'):
        set_step_checkpointing(lm, -1)
