"""The Llama-style models in the training task: named sizes, the twin rule, train-lm, sampling, compare lm."""
import json
import math
import pathlib

import pytest
import torch

pytest.importorskip('transformers')

from stepsnet.compare import lm_comparison, run_comparison  # noqa: E402
from stepsnet.data.text import prepare_text  # noqa: E402
from stepsnet.models.factory import create_lm, lm_config, lm_from_checkpoint  # noqa: E402
from stepsnet.models.steps_llama import (  # noqa: E402
    CausalLM,
    StepsLlamaConfig,
    step_intermediate_size,
    step_kv_heads,
)
from stepsnet.tasks.lm import LMConfig, sample_lm, train_lm  # noqa: E402


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp('lmdata')
    prepare_text(str(d), max_bytes=200_000)
    return str(d)


def test_named_sizes_match_the_gpt_counts_and_table4():
    with torch.device('meta'):
        for size, paper in (('small', 30), ('medium', 44), ('large', 63)):
            base, steps = create_lm(f'llama_{size}'), create_lm(f'steps_llama_{size}')
            assert isinstance(base.hf, __import__('transformers').LlamaForCausalLM)
            assert abs(base.num_params() / 1e6 - paper) < 1.0, size
            assert abs(steps.num_params() - base.num_params()) < 0.005 * base.num_params(), size
            assert steps.num_blocks == 2 * base.num_blocks
        gpt8, llama8 = create_lm('gpt_cpu', n_layer=8), create_lm('llama_cpu', num_hidden_layers=8)
        assert abs(llama8.num_params() - gpt8.num_params()) < 0.01 * gpt8.num_params()
    assert str(lm_config('steps_llama_cpu', num_hidden_layers=8).plan()) == '64/H2x8, 88/H2x4, 128/H4x4'


def test_docs_state_the_measured_counts():
    doc = (pathlib.Path(__file__).resolve().parents[1] / 'docs' / 'llama.md').read_text()
    with torch.device('meta'):
        count = {n: f'{create_lm(n, **kw).num_params() / 1e6:.1f}M' for n, kw in (
            ('llama_small', {}), ('llama_medium', {}), ('llama_large', {}), ('steps_llama_small', {}),
            ('steps_llama_medium', {}), ('steps_llama_large', {}))}
        cell = {n: f'{create_lm(n, **kw).num_params() / 1e6:.2f}M' for n, kw in (
            ('llama_cpu', {'num_hidden_layers': 8}), ('steps_llama_cpu', {'num_hidden_layers': 8}),
            ('gpt_cpu', {'n_layer': 8}))}
    assert (f'{count["llama_small"]} / {count["llama_medium"]} / {count["llama_large"]} (Steps: '
            f'{count["steps_llama_small"]} / {count["steps_llama_medium"]} / {count["steps_llama_large"]})') in doc
    assert (f'({cell["llama_cpu"]} parameters, the GPT cell\'s\n{cell["gpt_cpu"]})' in doc and
            f'128/H4 x4 ({cell["steps_llama_cpu"]})' in doc)



def test_twin_rule_pieces():
    # the group ratio where it divides, else the nearest divisor (the larger on a tie)
    assert step_kv_heads(16, 32, 8) == 4 and step_kv_heads(22, 32, 8) == 2 and step_kv_heads(7, 14, 2) == 1
    assert step_kv_heads(6, 6, 6) == 6
    # Llama's multiple_of rule on the baseline's SwiGLU ratio; the full width keeps the baseline's
    assert step_intermediate_size(2048, 4096, 11008, 256) == 5632
    assert step_intermediate_size(4096, 4096, 11008, 256) == 11008
    # Qwen2-0.5B's 896/H14: the multiple-of-8 plan leaves 632/H8 (head width 79); 640/H10 keeps rotary pairs
    cfg = StepsLlamaConfig(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                           num_key_value_heads=2, num_steps=3)
    assert str(cfg.plan()) == '448/H7x24, 640/H10x12, 896/H14x12' and cfg.num_hidden_layers == 48
    assert cfg.base_num_hidden_layers == 24 and StepsLlamaConfig.from_dict(cfg.to_dict()).num_hidden_layers == 48


def test_bad_configs_say_what_is_wrong():
    with pytest.raises(ValueError, match='unknown Llama model'):
        lm_config('steps_llama_huge')
    with pytest.raises(ValueError, match='one step'):
        lm_config('llama_tiny', num_steps=3)
    with pytest.raises(ValueError, match='plan .* has 4 blocks'):
        StepsLlamaConfig(hidden_size=32, num_attention_heads=2, num_hidden_layers=5, base_num_hidden_layers=2,
                         num_steps=3, intermediate_size=88)


def test_forward_flops_and_one_step_sanity():
    torch.manual_seed(0)
    base, steps = create_lm('llama_tiny').eval(), create_lm('steps_llama_tiny').eval()
    x, y = torch.randint(0, 256, (2, 16)), torch.randint(0, 256, (2, 16))
    logits, loss = steps(x, y)
    assert logits.shape == (2, 16, 256) and loss.item() == pytest.approx(math.log(256), abs=0.2)
    assert steps(x)[0].shape == (2, 1, 256)
    b, s = base.flops_per_token(16)['forward_macs'], steps.flops_per_token(16)['forward_macs']
    assert abs(s - b) < 0.1 * b
    # the one-step Steps model is transformers' Llama: same weights, same loss
    one = create_lm('steps_llama_tiny', num_steps=1).eval()
    one.hf.load_state_dict(base.hf.state_dict())
    torch.testing.assert_close(one(x, y)[1], base(x, y)[1], rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match='longer than the model block_size'):
        steps(torch.zeros(1, 33, dtype=torch.long))
    # transformers' layer checkpointing through the task's switch: same loss and gradients
    steps.train()
    steps(x, y)[1].backward()
    grads = [p.grad.clone() for p in steps.parameters()]
    steps.zero_grad()
    steps.set_grad_checkpointing(True)
    steps(x, y)[1].backward()
    for p, g in zip(steps.parameters(), grads):
        torch.testing.assert_close(p.grad, g, rtol=1e-5, atol=1e-7)


def test_train_lm_checkpoint_and_sample(data_dir, tmp_path, one_thread):
    cfg = LMConfig(data_dir=data_dir, out_dir=str(tmp_path / 'r'), model='steps_llama_tiny', batch_size=4,
                   max_iters=20, lr=3e-3, warmup_iters=2, eval_interval=10, eval_iters=2, final_eval_windows=8,
                   log_interval=5, progress=False, tensorboard=False, device='cpu', seed=1)
    s = train_lm(cfg)
    assert s['plan'] == '16/H1x2, 24/H2x1, 32/H2x1' and s['blocks'] == 4
    assert s['final']['loss'] < math.log(256) - 0.3
    model, info = lm_from_checkpoint(s['checkpoint'])
    assert isinstance(model, CausalLM) and model.config.num_steps == 3 and info['model_name'] == 'steps_llama_tiny'
    texts = sample_lm(s['checkpoint'], prompt='def ', max_new_tokens=5, num_samples=2)
    assert len(texts) == 2 and all(t.startswith('def ') for t in texts)


def test_train_lm_command_with_steps_llama_cpu(data_dir, tmp_path, capsys, one_thread):
    from stepsnet.cli import main
    assert main(['train-lm', '--config', str(pathlib.Path(__file__).resolve().parents[1] / 'configs/lm/cpu.yaml'),
                 '--model', 'steps_llama_cpu', '--data-dir', data_dir, '--out-dir', str(tmp_path / 'r'),
                 '--max-iters', '3', '--warmup-iters', '1', '--batch-size', '2', '--block-size', '32',
                 '--eval-interval', '3', '--eval-iters', '1', '--final-eval-windows', '2', '--no-progress',
                 '--no-tensorboard']) == 0
    assert 'steps_llama_cpu: 3 steps, 192 tokens; val loss' in capsys.readouterr().out
    config = json.loads((tmp_path / 'r' / 'config.json').read_text())
    assert config['plan'] == '64/H2x4, 88/H2x2, 128/H4x2' and config['model']['model_type'] == 'steps_llama'


def test_compare_lm_accepts_the_llama_pair(data_dir, tmp_path, one_thread):
    comp = lm_comparison('llama_tiny', 'steps_llama_tiny', seeds=[0], out=str(tmp_path / 'c'),
                         overrides=dict(data_dir=data_dir, batch_size=4, block_size=32, max_iters=4, eval_iters=1,
                                        final_eval_windows=4, log_interval=1, progress=False))
    r = run_comparison(comp, progress=False)
    arms = r['points'][0]['arms']
    assert arms['baseline']['label'] == 'llama_tiny' and arms['steps']['blocks'] == 4
    assert json.loads((tmp_path / 'c' / 'results.json').read_text())['points'][0]['diffs']['steps']['n'] == 1
