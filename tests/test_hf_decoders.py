"""The Steps twin of any decoder-only transformers model (stepsnet.hf.steps_decoder): every family of the registry
gives the host's logits with a one-step plan, generates with the cache, saves and loads; the twin rule, per-layer
patterns, hidden states, attention implementation, checkpointing, Trainer, remote code, errors, and the tables of
docs/llama.md."""
import json
import os
import pathlib
import subprocess
import sys

import pytest
import torch

transformers = pytest.importorskip('transformers')

from transformers import AutoConfig, AutoModelForCausalLM  # noqa: E402

import stepsnet.hf as hf  # noqa: E402
from stepsnet.hf import coverage  # noqa: E402
from stepsnet.hf import steps_decoder as sd  # noqa: E402
from stepsnet.steps import set_step_checkpointing  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
ASKED = ('llama', 'qwen2', 'qwen3', 'mistral', 'mixtral', 'gemma2', 'gemma3_text', 'phi3', 'olmo2', 'gpt_neox',
         'granite', 'qwen2_moe')


def example(model_type, **kw):
    return AutoConfig.for_model(model_type, **{**hf.DECODERS[model_type].example, **kw})


def twin_model(model_type, num_steps=3, feedforward='matched', **kw):
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(hf.steps_twin_config(example(model_type, **kw), num_steps=num_steps,
                                                                 feedforward=feedforward))


@pytest.fixture(scope='module')
def checks():
    """check_decoder's results, measured once: the per-family test fills it, the docs test reads it."""
    return {}


def measured(checks, model_type):
    if model_type not in checks:
        checks[model_type] = coverage.check_decoder(model_type)
    return checks[model_type]


def test_the_registry_covers_the_asked_families():
    assert set(ASKED) <= set(hf.DECODERS) and len(hf.DECODERS) >= 10
    assert all(f.example['vocab_size'] == 256 and f.example['hidden_size'] == 64 for f in hf.DECODERS.values())


@pytest.mark.parametrize('model_type', list(hf.DECODERS))
def test_family_one_step_exact_cache_and_reload(model_type, checks, one_thread):
    c = measured(checks, model_type)
    assert c['one_step_exact'] and c['one_step_max_diff'] == 0.0 and c['host_checkpoint_equal'], c
    assert c['cache_equal'] and c['static_cache_equal'] and c['cached_step_max_diff'] <= 1e-5, c
    assert c['reload_equal'] and c['reload_class'] == c['twin_class'] and c['auto_map'], c
    assert c['twin_class'] == 'StepsTwin' + c['host_class'] and c['plan'].count('/H') == 3


def test_one_step_twin_is_the_host_gemma2(one_thread):
    """Soft-capping, sqrt(hidden) embeddings, sliding windows: the same names, logits and hidden states."""
    config = example('gemma2', num_hidden_layers=4)
    torch.manual_seed(1)
    host = AutoModelForCausalLM.from_config(config).eval()
    twin = AutoModelForCausalLM.from_config(hf.steps_twin_config(config, num_steps=1)).eval()
    assert set(twin.state_dict()) == set(host.state_dict())
    twin.load_state_dict(host.state_dict())
    x = torch.randint(1, 256, (2, 20))
    mask = torch.ones_like(x)
    mask[1, :4] = 0
    with torch.no_grad():
        a = host(x, attention_mask=mask, output_hidden_states=True)
        b = twin(x, attention_mask=mask, output_hidden_states=True)
    assert torch.equal(a.logits, b.logits)
    assert len(b.hidden_states) == 5 and all(torch.equal(p, q) for p, q in zip(a.hidden_states, b.hidden_states))
    assert twin.config.layer_types == host.config.layer_types == ['sliding_attention', 'full_attention'] * 2


def test_twin_rule_heads_kv_heads_head_width_and_experts():
    # Qwen3: head_dim 32 apart from hidden / heads = 16; heads scale with the width, the head width stays
    twin = twin_model('qwen3', feedforward='scaled')  # the plain rule: feed-forward scaled with the width
    assert str(twin.config.plan()) == '32/H2x2, 48/H3x1, 64/H4x1'
    narrow = twin.model.layers[2].self_attn  # 48 wide, 3 heads; key/value heads: 3 * 2 / 4 -> nearest divisor 1
    assert (narrow.q_proj.out_features, narrow.k_proj.out_features, narrow.q_proj.in_features) == (96, 32, 48)
    assert twin.model.layers[2].mlp.gate_proj.out_features == 96  # 128 * 48 / 64
    # Mixtral: every expert at the step's width, the same number of experts and router outputs
    moe = twin_model('mixtral', feedforward='scaled').model.layers[0].mlp
    assert moe.gate.weight.shape == (4, 32)
    assert moe.experts.gate_up_proj.shape == (4, 2 * 64, 32) and moe.experts.down_proj.shape == (4, 32, 64)
    # the rule's pieces
    assert sd.twin_plan(2304, 8, 26, 3).heads == (4, 6, 8)  # Gemma-2-2B: 1629 -> 1728, whole heads of 288
    assert sd.step_feedforward_size(9216, 1152, 2304, 16) == 4608
    assert sd.step_feedforward_size(9216, 2304, 2304, 16) == 9216
    assert sd.substituted_host_layers(sd.twin_plan(64, 4, 4, 3), 4) == [0, 0, 0, 0, 1, 1, 2, 3]


def test_per_layer_patterns_continue_over_the_twins_blocks():
    # Gemma 2 alternates: the twin's 8 blocks too
    twin = hf.steps_twin_config(example('gemma2', num_hidden_layers=4))
    assert twin.num_hidden_layers == 8 and twin.layer_types == ['sliding_attention', 'full_attention'] * 4
    # a pattern with no shorter period: each block takes its substituted host layer's type
    gemma3 = hf.steps_twin_config(example('gemma3_text'))
    assert gemma3.layer_types == ['sliding_attention'] * 4 + ['full_attention']
    model = AutoModelForCausalLM.from_config(gemma3)
    assert [blk.self_attn.sliding_window for blk in model.model.layers] == [8, 8, 8, 8, None]
    # SmolLM3's no-rotary layers (every second here) keep their period
    smol = hf.steps_twin_config(example('smollm3'))
    assert smol.no_rope_layers == [1, 0] * 4
    # Qwen2-MoE's dense-MLP layer indices go to the blocks that substitute them
    moe = hf.steps_twin_config(example('qwen2_moe', mlp_only_layers=[1]))
    assert moe.mlp_only_layers == [3]
    blocks = AutoModelForCausalLM.from_config(moe).model.layers
    assert [type(b.mlp).__name__ for b in blocks] == ['Qwen2MoeSparseMoeBlock'] * 3 + ['Qwen2MoeMLP']
    # the host's own derivation for a config given with the baseline's depth
    fields = {k: v for k, v in example('gemma2').to_dict().items() if k != 'model_type'}
    direct = AutoConfig.for_model('steps_twin_gemma2', **fields, num_steps=3)
    assert direct.num_hidden_layers == 4 and direct.base_num_hidden_layers == 2


def test_hidden_states_are_full_width(one_thread):
    model = twin_model('qwen3').eval()
    widths = model.config.plan().block_widths()
    x = torch.randint(0, 256, (2, 10))
    with torch.no_grad():
        out = model(x, output_hidden_states=True)
    hs = out.hidden_states
    emb = model.model.embed_tokens(x)
    assert len(hs) == 5 and all(h.shape == (2, 10, 64) for h in hs) and torch.equal(hs[0], emb)
    for i, w in enumerate(widths[:-1]):
        assert torch.equal(hs[i + 1][..., w:], emb[..., w:])
    torch.testing.assert_close(model.lm_head(hs[-1]), out.logits, rtol=0, atol=0)


def test_attention_implementation_reaches_the_narrow_layers(one_thread):
    model = twin_model('llama').eval()
    x = torch.randint(0, 256, (2, 12))
    with torch.no_grad():
        sdpa = model(x).logits
        model.set_attn_implementation('eager')
        narrow = model.model.layers[0].self_attn
        assert narrow.config is not model.config and narrow.config._attn_implementation == 'eager'
        torch.testing.assert_close(model(x).logits, sdpa, rtol=0, atol=1e-5)
        # the host's attention maps, each layer's with its own heads
        maps = model(x, output_attentions=True).attentions
        assert [a.shape[1] for a in maps] == [2, 2, 3, 4] and all(a.shape[-2:] == (12, 12) for a in maps)


def test_checkpointing_gives_the_same_gradients(one_thread):
    model = twin_model('gemma2', num_hidden_layers=4).train()
    x = torch.randint(0, 256, (2, 16))
    model(x, labels=x).loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    for switch in (lambda: set_step_checkpointing(model, 2),
                   lambda: model.activation_checkpointing_enable(
                       activation_checkpointing_kwargs={'use_reentrant': False})):
        model.zero_grad()
        switch()
        model(x, labels=x).loss.backward()
        for n, p in model.named_parameters():
            torch.testing.assert_close(p.grad, grads[n], rtol=1e-5, atol=1e-7)


def test_two_trainer_steps(tmp_path, one_thread):
    from transformers import Trainer, TrainingArguments

    model = twin_model('granite')
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    ids = (torch.randint(0, 200, (16, 1), generator=torch.Generator().manual_seed(0)) + torch.arange(16)) % 256
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=8, learning_rate=1e-2,
                             logging_steps=1, report_to=[], save_strategy='no', use_cpu=True, disable_tqdm=True,
                             dataloader_num_workers=0)
    trainer = Trainer(model=model, args=args, train_dataset=[{'input_ids': r, 'labels': r} for r in ids])
    trainer.train()
    losses = [h['loss'] for h in trainer.state.log_history if 'loss' in h]
    assert len(losses) == 2 and all(torch.isfinite(torch.tensor(losses)))
    assert all(not torch.equal(p, before[n]) for n, p in model.named_parameters() if n.startswith('model.layers.0.'))


def test_config_round_trip_and_host_config(tmp_path):
    twin = hf.steps_twin_config(example('gemma3_text'), feedforward='matched')
    twin.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / 'config.json').read_text())
    assert saved['model_type'] == 'steps_twin_gemma3_text' and saved['num_hidden_layers'] == 5
    assert saved['auto_map']['AutoConfig'] == 'steps_decoder.StepsTwinGemma3TextConfig'
    assert (tmp_path / 'steps_decoder.py').read_text() == (ROOT / 'stepsnet/hf/remote_code.py').read_text()
    loaded = AutoConfig.from_pretrained(tmp_path)
    drop = ('auto_map', '_name_or_path', 'transformers_version')
    assert type(loaded) is type(twin) and not hasattr(twin, 'auto_map')
    assert {k: v for k, v in loaded.to_dict().items() if k not in drop} == \
        {k: v for k, v in twin.to_dict().items() if k not in drop}
    assert loaded.step_feedforward == twin.step_feedforward and set(loaded.step_feedforward) == {'32', '48'}
    host = example('gemma2')
    assert hf.steps_twin_config(host, num_steps=1).host_config().to_dict() == host.to_dict()


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


def test_saved_twin_loads_with_trust_remote_code_and_no_import(tmp_path, one_thread):
    """The remote-code auto_map, as for Steps-Llama: a fresh process that never imports stepsnet loads the folder."""
    model = twin_model('gpt_neox').eval()
    model.save_pretrained(tmp_path / 'm')
    x = torch.randint(0, 256, (2, 12))
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
    assert got['cls'] == 'stepsnet.hf.steps_decoder.StepsTwinGPTNeoXForCausalLM'  # the package's class, not a copy
    assert got['base'] == 'StepsTwinGPTNeoXModel' and got['diff'] == 0.0
    shim = (ROOT / 'stepsnet/hf/remote_code.py').read_text()
    for folder in ('m', 'again'):  # saved again after a remote-code load: the same entries and the same small file
        assert json.loads((tmp_path / folder / 'config.json').read_text())['auto_map'] == {
            'AutoConfig': 'steps_decoder.StepsTwinGPTNeoXConfig', 'AutoModel': 'steps_decoder.StepsTwinGPTNeoXModel',
            'AutoModelForCausalLM': 'steps_decoder.StepsTwinGPTNeoXForCausalLM'}
        assert (tmp_path / folder / 'steps_decoder.py').read_text() == shim


def test_an_unregistered_architecture_is_built_by_discovery_with_a_warning(one_thread):
    config = AutoConfig.for_model('olmo', **hf.DECODERS['llama'].example)
    with pytest.warns(UserWarning, match="'olmo' is not in stepsnet.hf.DECODERS"):
        classes = hf.twin_classes('olmo')
    assert classes.config.family.feedforward_fields == ('intermediate_size',)
    torch.manual_seed(0)
    host = AutoModelForCausalLM.from_config(config).eval()
    twin = AutoModelForCausalLM.from_config(hf.steps_twin_config(config, num_steps=1)).eval()
    twin.load_state_dict(host.state_dict())
    x = torch.randint(0, 256, (2, 8))
    with torch.no_grad():
        assert torch.equal(host(x).logits, twin(x).logits)


def test_errors_name_the_value_and_what_was_expected():
    from transformers import Gemma3Config, LlamaConfig

    with pytest.raises(ValueError, match="no causal LM and base model for model_type='t5'"):
        hf.twin_classes('t5')
    with pytest.raises(ValueError, match="'gpt_neo' has no Steps twin: the layers return a tuple"):
        hf.twin_classes('gpt_neo')
    with pytest.raises(ValueError, match="'gemma3' has no Steps twin: the multimodal"):
        hf.steps_twin_config(Gemma3Config())
    with pytest.raises(ValueError, match=r'3 steps below width 32 with 2 heads of 16 channels round to widths '
                                         r'\(16, 16, 32\), not increasing'):
        hf.steps_twin_config(LlamaConfig(hidden_size=32, num_attention_heads=2, intermediate_size=64,
                                         num_hidden_layers=2))
    with pytest.raises(ValueError, match='already a Steps model config'):
        hf.steps_twin_config(hf.steps_twin_config(example('llama')))
    with pytest.raises(ValueError, match="feedforward='wide'; expected 'scaled' or 'matched'"):
        hf.steps_twin_config(example('llama'), feedforward='wide')
    fields = {k: v for k, v in example('llama').to_dict().items() if k != 'model_type'}
    with pytest.raises(ValueError, match='plan .* has 4 blocks'):
        AutoConfig.for_model('steps_twin_llama', **fields, num_steps=3, base_num_hidden_layers=2)
    with pytest.raises(ValueError, match='one-step trunk; this twin has num_steps=3'):
        hf.steps_twin_config(example('llama')).host_config()


def test_parity_of_published_shapes_and_the_docs_tables(checks):
    parity = hf.parity_table()
    families = {r['family'] for r in parity}
    assert set(ASKED) <= families
    for r in parity:
        assert r['blocks'] == 2 * r['layers'], r
        # within 0.5% unless whole heads put a step's width over 1% from d / sqrt2^k (the note says where)
        assert abs(r['diff']) <= hf.twins.PARITY_TOLERANCE or r['note'], r
        assert abs(r['matched_diff']) <= hf.twins.PARITY_TOLERANCE, r
    assert parity[0]['model'] == 'Llama-2-7B' and parity[0]['params'] == 6_738_415_616  # the published count
    rows = coverage.coverage_rows(checks={t: measured(checks, t) for t in hf.DECODERS}, parity=parity)
    doc = (ROOT / 'docs' / 'llama.md').read_text()
    assert coverage.with_tables(doc, rows, parity) == doc, \
        'docs/llama.md tables are stale: run `python -m stepsnet.hf.coverage docs/llama.md`'
    assert f'{len(hf.DECODERS)} families are tested' in doc
