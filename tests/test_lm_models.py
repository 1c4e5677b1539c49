"""The language models: Table 4 parameter counts, the Steps plan, attention paths, causality, errors."""
import math

import pytest
import torch

from stepsnet.models.steps_gpt import GPT, PAPER_TABLE4, GPTConfig, create_lm, lm_config


@pytest.mark.parametrize('name', sorted(PAPER_TABLE4))
def test_table4_parameter_counts(name):
    with torch.device('meta'):
        model = create_lm(name)
    params = model.num_params()
    assert model.config.vocab_size == 50257
    assert abs(params - PAPER_TABLE4[name] * 1e6) < 1e6, f'{name}: {params:,} vs {PAPER_TABLE4[name]}M'


@pytest.mark.parametrize('size', ['small', 'medium', 'large'])
def test_steps_and_baseline_have_equal_parameters(size):
    with torch.device('meta'):
        base, steps = create_lm(f'gpt_{size}'), create_lm(f'steps_gpt_{size}')
    assert abs(base.num_params() - steps.num_params()) < 0.005 * base.num_params()
    assert steps.num_blocks == 2 * base.num_blocks


def test_steps_plan_is_the_three_step_pattern():
    small = lm_config('steps_gpt_small').plan()
    assert small.widths == (192, 272, 384) and small.depths == (6, 3, 3) and small.heads == (3, 4, 6)
    large = lm_config('steps_gpt_large').plan()
    assert large.widths == (256, 360, 512) and large.depths == (12, 6, 6) and large.heads == (4, 6, 8)
    assert lm_config('gpt_large').plan().widths == (512,)


@pytest.mark.parametrize('name', ['gpt_tiny', 'steps_gpt_tiny'])
def test_fused_and_manual_attention_agree(name):
    torch.manual_seed(0)
    model = create_lm(name).eval()
    x = torch.randint(0, 256, (3, 17))
    fused, _ = model(x, x)
    model.set_fused_attn(False)
    manual, _ = model(x, x)
    torch.testing.assert_close(fused, manual, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('name', ['gpt_tiny', 'steps_gpt_tiny'])
def test_causal_and_gradients_reach_every_parameter(name):
    torch.manual_seed(0)
    model = create_lm(name)
    x = torch.randint(0, 256, (2, 16))
    logits, loss = model(x, x)
    x2 = x.clone()
    x2[:, 10:] = (x2[:, 10:] + 1) % 256
    logits2, _ = model(x2, x2)
    torch.testing.assert_close(logits[:, :10], logits2[:, :10])
    assert not torch.allclose(logits[:, 10:], logits2[:, 10:])
    loss.backward()
    for n, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, n
    assert model.lm_head.weight is model.wte.weight
    assert abs(loss.item() - math.log(256)) < 0.5  # near-uniform at initialisation


def test_context_longer_than_model_raises():
    model = create_lm('gpt_tiny')
    with pytest.raises(ValueError, match='longer than the model block_size 32'):
        model(torch.zeros(1, 33, dtype=torch.long))


def test_generate_and_flops():
    torch.manual_seed(0)
    model = create_lm('steps_gpt_tiny').eval()
    out = model.generate(torch.zeros(2, 40, dtype=torch.long), 5, top_k=5)
    assert out.shape == (2, 45)
    base = create_lm('gpt_tiny').flops_per_token()['forward_macs']
    steps = model.flops_per_token()['forward_macs']
    assert 0.9 < steps / base < 1.15


def test_bad_config_raises():
    with pytest.raises(ValueError, match='n_head=5 does not divide n_embd=64'):
        GPTConfig(n_embd=64, n_head=5)
    with pytest.raises(ValueError, match='unknown language model'):
        lm_config('gpt_huge')
    with pytest.raises(ValueError, match='unknown GPTConfig fields'):
        GPTConfig.from_dict({'n_embd': 64, 'width': 3})
    assert isinstance(GPT(lm_config('gpt_tiny', dropout=0.1)), GPT)
