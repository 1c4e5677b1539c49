"""Steps-Llama inside Hugging Face transformers: parity with LlamaForCausalLM, the cache, save / reload, Trainer,
gradient checkpointing, the auto classes and its twins of real model shapes; the docs' examples (the Steps twins of
other architectures: tests/test_hf_decoders.py)."""
import json
import os
import pathlib
import subprocess
import sys

import pytest
import torch

transformers = pytest.importorskip('transformers')

from transformers import (  # noqa: E402
    AutoConfig,
    AutoModelForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
)

import stepsnet.hf as hf  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
TINY = dict(vocab_size=97, hidden_size=64, intermediate_size=176, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=64)


def twin_of(reference, **kw):
    """The one-step Steps-Llama of a transformers model, with its weights."""
    model = hf.StepsLlamaForCausalLM(hf.steps_llama_twin_config(reference.config, num_steps=1, **kw)).eval()
    model.load_state_dict(reference.state_dict())
    return model


@pytest.mark.parametrize('tied', [False, True])
def test_one_step_plan_is_llama_for_causal_lm(tied, one_thread):
    torch.manual_seed(0)
    ref = LlamaForCausalLM(LlamaConfig(**TINY, tie_word_embeddings=tied)).eval()
    ours = twin_of(ref)
    x = torch.randint(0, 97, (2, 24))
    diff = (ours(x).logits - ref(x).logits).abs().max().item()
    assert diff <= 1e-5
    # the same with a padded batch (left padding, as generation pads)
    mask = torch.ones_like(x)
    mask[0, :5] = 0
    diff = (ours(x, attention_mask=mask).logits - ref(x, attention_mask=mask).logits)[mask.bool()].abs().max()
    assert diff.item() <= 1e-5


def test_one_step_qwen2_twin_keeps_the_qkv_biases(one_thread):
    torch.manual_seed(0)
    ref = Qwen2ForCausalLM(Qwen2Config(**TINY)).eval()
    ours = twin_of(ref)
    assert ours.config.qkv_bias and ours.model.layers[0].self_attn.q_proj.bias is not None
    assert ours.model.layers[0].self_attn.o_proj.bias is None
    x = torch.randint(0, 97, (2, 16))
    assert (ours(x).logits - ref(x).logits).abs().max().item() <= 1e-5


def steps_tiny(**kw):
    torch.manual_seed(0)
    return hf.StepsLlamaForCausalLM(hf.steps_llama_twin_config(LlamaConfig(**TINY, **kw)))


def test_generate_with_the_cache_equals_generate_without(one_thread):
    model = steps_tiny().eval()
    assert str(model.config.plan()) == '32/H2x2, 48/H2x1, 64/H4x1' and len(model.model.layers) == 4
    x = torch.randint(0, 97, (2, 6))
    mask = torch.ones_like(x)
    with_cache = model.generate(x, attention_mask=mask, max_new_tokens=10, do_sample=False, use_cache=True,
                                pad_token_id=0)
    without = model.generate(x, attention_mask=mask, max_new_tokens=10, do_sample=False, use_cache=False,
                             pad_token_id=0)
    assert with_cache.shape == (2, 16) and torch.equal(with_cache, without)
    static = model.generate(x, attention_mask=mask, max_new_tokens=10, do_sample=False, pad_token_id=0,
                            cache_implementation='static')  # transformers 5 sizes each layer's cache at its first use
    assert torch.equal(static, without)
    # and the cached logits are the full forward pass's
    out = model(x[:, :4], use_cache=True)
    step = model(x[:, 4:5], cache=out.cache)
    torch.testing.assert_close(step.logits[:, -1], model(x[:, :5]).logits[:, -1], rtol=0, atol=1e-5)


def test_labels_loss_and_gradient_checkpointing(one_thread):
    model = steps_tiny().train()
    x = torch.randint(0, 97, (2, 16))
    out = model(x, labels=x)
    out.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    assert all(g.abs().sum() > 0 for g in grads.values())
    model.zero_grad()
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={'use_reentrant': False})
    assert all(m.gradient_checkpointing for m in model.model.layers)
    out2 = model(x, labels=x)
    out2.loss.backward()
    torch.testing.assert_close(out2.loss, out.loss, rtol=0, atol=0)
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, grads[n], rtol=1e-5, atol=1e-7)


def test_auto_classes():
    cfg = AutoConfig.for_model('steps_llama', **TINY, num_steps=3)
    assert isinstance(cfg, hf.StepsLlamaConfig) and cfg.num_hidden_layers == 4
    with torch.device('meta'):
        assert isinstance(AutoModelForCausalLM.from_config(cfg), hf.StepsLlamaForCausalLM)


RELOAD = '''
import sys, torch
import stepsnet
assert 'transformers' not in sys.modules, 'import stepsnet imported transformers'
import stepsnet.hf
from transformers import AutoModelForCausalLM
folder, x, expected = sys.argv[1], torch.load(sys.argv[2]), torch.load(sys.argv[3])
model = AutoModelForCausalLM.from_pretrained(folder).eval()
print(type(model).__name__, (model(x).logits - expected).abs().max().item())
'''


def test_save_pretrained_and_reload_in_a_fresh_process(tmp_path, one_thread):
    model = steps_tiny(tie_word_embeddings=True).eval()
    model.save_pretrained(tmp_path / 'm')
    assert (tmp_path / 'm' / 'model.safetensors').is_file()
    assert json.loads((tmp_path / 'm' / 'config.json').read_text())['model_type'] == 'steps_llama'
    x = torch.randint(0, 97, (2, 12))
    with torch.no_grad():
        torch.save(x, tmp_path / 'x.pt')
        torch.save(model(x).logits, tmp_path / 'y.pt')
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get('PYTHONPATH', ''),
               OMP_NUM_THREADS='1', HF_HUB_OFFLINE='1')
    out = subprocess.run([sys.executable, '-c', RELOAD, str(tmp_path / 'm'), str(tmp_path / 'x.pt'),
                          str(tmp_path / 'y.pt')], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    name, diff = out.stdout.split()[-2:]
    assert name == 'StepsLlamaForCausalLM' and float(diff) == 0.0


REMOTE = '''
import json, sys, torch
from transformers import AutoModel, AutoModelForCausalLM
assert not [m for m in sys.modules if m.split('.')[0] == 'stepsnet'], 'stepsnet was imported before loading'
folder, x, expected, resaved = sys.argv[1], torch.load(sys.argv[2]), torch.load(sys.argv[3]), sys.argv[4]
sys.modules['stepsnet'] = None  # as if it were not installed: the folder's code says what to install
try:
    AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)
    missing = 'loaded without stepsnet'
except ImportError as e:
    missing = str(e)
del sys.modules['stepsnet']
model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True).eval()
base = AutoModel.from_pretrained(folder, trust_remote_code=True)
model.save_pretrained(resaved)  # transformers has now registered the classes as remote code itself
print(json.dumps(dict(missing=missing, cls=f'{type(model).__module__}.{type(model).__name__}',
                      base=type(base).__name__, diff=(model(x).logits - expected).abs().max().item())))
'''


def test_save_pretrained_loads_with_trust_remote_code_and_no_import(tmp_path, one_thread):
    """The Hub's remote-code convention: a fresh process that never imports stepsnet loads the folder offline."""
    from stepsnet.hf.saving import AUTO_MAP, REMOTE_CODE_FILE

    model = steps_tiny().eval()
    model.save_pretrained(tmp_path / 'm')
    assert not hasattr(model.config, 'auto_map')  # the config object is left as it was
    shim = (ROOT / 'stepsnet' / 'hf' / 'remote_code.py').read_text()
    assert json.loads((tmp_path / 'm' / 'config.json').read_text())['auto_map'] == AUTO_MAP
    assert (tmp_path / 'm' / REMOTE_CODE_FILE).read_text() == shim
    x = torch.randint(0, 97, (2, 12))
    with torch.no_grad():
        torch.save(x, tmp_path / 'x.pt')
        torch.save(model(x).logits, tmp_path / 'y.pt')
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get('PYTHONPATH', ''),
               OMP_NUM_THREADS='1', HF_HUB_OFFLINE='1', HF_MODULES_CACHE=str(tmp_path / 'modules'))
    out = subprocess.run([sys.executable, '-c', REMOTE, str(tmp_path / 'm'), str(tmp_path / 'x.pt'),
                          str(tmp_path / 'y.pt'), str(tmp_path / 'again')], capture_output=True, text=True, env=env,
                         cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.splitlines()[-1])
    assert got['missing'].endswith(': pip install stepsnet') and '\n' not in got['missing'], got['missing']
    assert got['cls'] == 'stepsnet.models.steps_llama.StepsLlamaForCausalLM'  # the package's class, not a copy
    assert got['base'] == 'StepsLlamaModel' and got['diff'] == 0.0
    # saved again after a remote-code load: the same entries and the same small file, not the whole module
    assert json.loads((tmp_path / 'again' / 'config.json').read_text())['auto_map'] == AUTO_MAP
    assert (tmp_path / 'again' / REMOTE_CODE_FILE).read_text() == shim


def test_saved_config_carries_auto_map_but_its_llama_config_does_not(tmp_path):
    from stepsnet.hf.saving import AUTO_MAP, REMOTE_CODE_FILE

    hf.steps_llama_twin_config(LlamaConfig(**TINY), num_steps=1).save_pretrained(tmp_path)
    assert (tmp_path / REMOTE_CODE_FILE).is_file()
    loaded = hf.StepsLlamaConfig.from_pretrained(tmp_path)
    assert loaded.auto_map == AUTO_MAP
    # a Llama folder saved from it must not name the Steps classes
    assert 'auto_map' not in loaded.llama_config().to_dict()


def test_output_hidden_states(one_thread):
    model = steps_tiny().eval()
    widths = model.config.plan().block_widths()
    assert widths == [32, 32, 48, 64]
    x = torch.randint(0, 97, (2, 10))
    with torch.no_grad():
        plain = model(x, use_cache=False)
        out = model(x, output_hidden_states=True, use_cache=False)
        hs = out.hidden_states
        assert plain.hidden_states is None and torch.equal(out.logits, plain.logits)
        # the embeddings, then every decoder layer, all at the full width
        assert isinstance(hs, tuple) and len(hs) == model.config.num_hidden_layers + 1 == 5
        assert all(h.shape == (2, 10, 64) for h in hs)
        emb = model.model.embed_tokens(x)
        assert torch.equal(hs[0], emb)
        for i, w in enumerate(widths):
            # the layer's own output in its step's first w channels, the embedding channels not taken in yet after
            assert torch.equal(hs[i + 1][..., w:], emb[..., w:])
            if i + 1 < len(widths):
                torch.testing.assert_close(hs[i + 1][..., :w], model.model.layers[i](hs[i][..., :w]))
        # the last one is the normed output, as Llama's
        torch.testing.assert_close(model.lm_head(hs[-1]), out.logits, rtol=0, atol=0)
        # transformers' selection by index keeps the tuple's length
        some = model(x, output_hidden_states=[0, -2], use_cache=False).hidden_states
        assert [h is not None for h in some] == [True, False, False, True, False]
        assert torch.equal(some[3], hs[3])
        model.config.output_hidden_states = True
        assert len(model.model(x, use_cache=False).hidden_states) == 5


def test_three_trainer_steps_lower_the_loss(tmp_path, one_thread):
    from transformers import Trainer, TrainingArguments

    model = steps_tiny()
    g = torch.Generator().manual_seed(0)
    # a learnable toy: each sequence counts up from a random start
    starts = torch.randint(0, 60, (16, 1), generator=g)
    ids = (starts + torch.arange(20)) % 97
    data = [{'input_ids': row, 'labels': row} for row in ids]

    def loss_now():
        model.eval()
        with torch.no_grad():
            return model(ids, labels=ids).loss.item()

    before = loss_now()
    args = TrainingArguments(output_dir=str(tmp_path / 'out'), max_steps=3, per_device_train_batch_size=16,
                             learning_rate=1e-2, lr_scheduler_type='constant', warmup_steps=0, logging_steps=1,
                             report_to=[], save_strategy='no', use_cpu=True, dataloader_num_workers=0,
                             disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=data)
    trainer.train()
    losses = [h['loss'] for h in trainer.state.log_history if 'loss' in h]
    after = loss_now()
    assert len(losses) == 3 and after < before - 0.1, (before, losses, after)


def test_steps_llama_twins_of_real_shapes_are_within_half_a_percent():
    """Steps-Llama's rule (the planner's heads, free head widths); the Steps twins' table is tests/test_hf_decoders."""
    from transformers import AutoConfig

    for name in ('Llama-2-7B', 'Llama-3-8B', 'Mistral-7B', 'Qwen2-0.5B', 'TinyLlama-1.1B'):
        fields = dict(hf.REAL_SHAPES[name])
        config = AutoConfig.for_model(fields.pop('model_type'), **fields)
        twin = hf.steps_llama_twin_config(config)
        with torch.device('meta'):
            original = sum(p.numel() for p in AutoModelForCausalLM.from_config(config).parameters())
            steps = sum(p.numel() for p in hf.StepsLlamaForCausalLM(twin).parameters())
        assert abs(steps - original) <= hf.twins.PARITY_TOLERANCE * original, (name, steps, original)
        assert twin.num_hidden_layers == 2 * config.num_hidden_layers
    # docs/llama.md's parity table (the Steps twins', written by python -m stepsnet.hf.coverage) has this row
    doc = (ROOT / 'docs' / 'llama.md').read_text()
    assert hf.format_parity_table(hf.parity_table(['Llama-2-7B'])).splitlines()[2] in doc


def test_docs_examples_run_as_written(tmp_path, monkeypatch, one_thread):
    import re
    doc = (ROOT / 'docs' / 'llama.md').read_text()
    body = doc.split('## Hugging Face usage\n', 1)[1].split('\n## ', 1)[0]
    blocks = re.findall(r'```python\n(.*?)```', body, flags=re.S)
    assert len(blocks) == 2
    monkeypatch.chdir(tmp_path)
    scope = {}
    torch.manual_seed(0)
    for code in blocks:
        exec(compile(code, 'docs/llama.md', 'exec'), scope)
    assert scope['out'].shape == (1, 12) and str(scope['config'].plan()) == '32/H2x2, 48/H3x1, 64/H4x1'
    assert type(scope['model']).__name__ == 'StepsTwinGemma2ForCausalLM'
    assert (tmp_path / 'steps-gemma2' / 'steps_decoder.py').is_file()
    x = torch.randint(0, 128, (1, 8))
    torch.testing.assert_close(scope['reloaded'].eval()(x).logits, scope['model'].eval()(x).logits)
    assert torch.equal(scope['one_step'].eval()(x).logits, scope['reference'].eval()(x).logits)
