"""Weights in timm's layout: train -> export -> load with timm in a fresh process gives the same logits; bad files
give clear errors; pretrained=True without weights says how to load local ones."""
import json
import os
import pathlib
import subprocess
import sys

import pytest
import safetensors.torch
import timm
import torch

import stepsnet
from stepsnet.cli import main
from stepsnet.weights import CONFIG_NAME, WEIGHTS_NAME, WeightsError, export_weights, load_model, read_config

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """One epoch of the digits recipe (`stepsnet train`), exported with `stepsnet export-weights`."""
    run = tmp_path_factory.mktemp('digits')
    args = ['train', '--config', str(ROOT / 'configs/cls/digits_cpu.yaml'), '--epochs', '1', '--out-dir', str(run),
            '--workers', '0', '--no-progress']
    assert main(args) == 0
    out = run / 'weights'
    assert main(['export-weights', str(run / 'best.pth'), '--out', str(out)]) == 0
    return run, out


def _reference_logits(checkpoint, x):
    from stepsnet.models.factory import classifier_from_checkpoint
    model, _ = classifier_from_checkpoint(str(checkpoint))
    with torch.no_grad():
        return model(x)


def test_export_writes_timms_layout(trained):
    run, out = trained
    assert sorted(os.listdir(out)) == [CONFIG_NAME, WEIGHTS_NAME]  # no temporary files left behind
    umask = os.umask(0)
    os.umask(umask)
    assert {(out / f).stat().st_mode & 0o777 for f in (CONFIG_NAME, WEIGHTS_NAME)} == {0o666 & ~umask}
    config = json.loads((out / CONFIG_NAME).read_text())
    assert config['architecture'] == 'test_steps_resnet' and config['num_classes'] == 10
    assert config['label_names'] == [str(i) for i in range(10)]
    pcfg = config['pretrained_cfg']
    assert pcfg['paper_ids'] == 'arXiv:2511.14329'
    assert pcfg['input_size'] == [3, 32, 32] and pcfg['mean'] == [0.5] * 3 and pcfg['std'] == [0.5] * 3
    assert pcfg['num_classes'] == 10 and pcfg['crop_pct'] == 1.0
    ck = torch.load(run / 'best.pth', weights_only=True)
    tensors = safetensors.torch.load_file(str(out / WEIGHTS_NAME))
    assert tensors.keys() == ck['model'].keys()
    assert all(torch.equal(tensors[k], ck['model'][k]) for k in tensors)


def test_timm_loads_the_export_in_a_fresh_process(trained, tmp_path, one_thread):
    """`timm.create_model('local-dir:...')` and `pretrained_cfg_overlay=dict(file=...)` after `import stepsnet`;
    `stepsnet.load_model` also for the twin of a timm model, which a fresh process has not registered yet."""
    run, out = trained
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    torch.save(x, tmp_path / 'x.pt')
    torch.manual_seed(0)
    twin = stepsnet.create_steps_model('convnext_atto', num_classes=3).eval()
    export_weights(twin, tmp_path / 'twin')
    script = f'''
import timm, torch
import stepsnet
x = torch.load({str(tmp_path / 'x.pt')!r}, weights_only=True)
a = timm.create_model('local-dir:{out}', pretrained=True).eval()
b = timm.create_model('test_steps_resnet', pretrained=True,
                      pretrained_cfg_overlay=dict(file='{out / WEIGHTS_NAME}', num_classes=10)).eval()
c, data_config = stepsnet.load_model('{out}')
assert not timm.is_model('steps_convnext_atto')
twin, _ = stepsnet.load_model('local-dir:{tmp_path / 'twin'}')
with torch.no_grad():
    torch.save(dict(a=a(x), b=b(x), c=c(x), twin=twin(x), data_config=data_config,
                    labels=a.pretrained_cfg['label_names']), {str(tmp_path / 'out.pt')!r})
'''
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get('PYTHONPATH', ''))
    done = subprocess.run([sys.executable, '-c', script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    got = torch.load(tmp_path / 'out.pt', weights_only=True)
    ref = _reference_logits(run / 'best.pth', x)
    for key in 'abc':  # the same weights; another process may pick other kernels, hence float tolerances
        torch.testing.assert_close(got[key], ref)
    with torch.no_grad():
        torch.testing.assert_close(got['twin'], twin(x))
    assert got['data_config']['input_size'] == (3, 32, 32) and got['data_config']['mean'] == (0.5, 0.5, 0.5)
    assert got['labels'] == [str(i) for i in range(10)]


@pytest.mark.parametrize('name,kwargs', [
    ('test_steps_vit', dict(img_size=48, num_classes=7)),
    ('test_steps_swin', dict(num_classes=3, drop_path_rate=0.)),
    ('test_steps_convnext', dict(num_classes=4, ls_init_value=0.5)),
])
def test_export_a_model_and_load_it_back(name, kwargs, tmp_path, one_thread):
    torch.manual_seed(0)
    model = timm.create_model(name, **kwargs).eval()
    export_weights(model, tmp_path / 'w', label_names=[f'c{i}' for i in range(kwargs['num_classes'])])
    loaded, data_config = load_model(tmp_path / 'w')
    size = data_config['input_size']
    assert size[-1] == kwargs.get('img_size', timm.get_pretrained_cfg(name).input_size[-1])
    x = torch.randn(2, *size)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    assert loaded.pretrained_cfg['label_names'][0] == 'c0'


def test_pretrained_without_weights_says_how_to_load_local_ones():
    with pytest.raises(WeightsError, match='no released weights exist') as e:
        timm.create_model('steps_resnet50', pretrained=True)
    assert 'local-dir:' in str(e.value) and 'pretrained_cfg_overlay' in str(e.value)


def test_a_weight_source_in_the_config_loads_without_code_changes(trained, tmp_path):
    """What a default_cfgs entry with url= (or hf_hub_id=) does once weights are released."""
    run, out = trained
    torch.save(safetensors.torch.load_file(str(out / WEIGHTS_NAME)), tmp_path / 'steps_digits.pth')
    model = timm.create_model('test_steps_resnet', pretrained=True, cache_dir=str(tmp_path / 'cache'),
                              pretrained_cfg_overlay=dict(url=(tmp_path / 'steps_digits.pth').as_uri(),
                                                          num_classes=10)).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), _reference_logits(run / 'best.pth', x))


@pytest.fixture
def copy_of(trained, tmp_path):
    def make():
        folder = tmp_path / 'copy'
        folder.mkdir()
        for f in (CONFIG_NAME, WEIGHTS_NAME):
            (folder / f).write_bytes((trained[1] / f).read_bytes())
        return folder
    return make


def test_corrupt_weights_are_a_clear_error(copy_of):
    folder = copy_of()
    data = (folder / WEIGHTS_NAME).read_bytes()
    (folder / WEIGHTS_NAME).write_bytes(data[:len(data) // 2])
    with pytest.raises(WeightsError, match=rf'{WEIGHTS_NAME} is not a readable safetensors file'):
        load_model(folder)
    with pytest.raises(WeightsError, match='not a readable safetensors file'):
        timm.create_model(f'local-dir:{folder}', pretrained=True)


def test_foreign_weights_are_a_clear_error(copy_of):
    folder = copy_of()
    foreign = timm.create_model('test_steps_vit', num_classes=10)
    safetensors.torch.save_file(foreign.state_dict(), str(folder / WEIGHTS_NAME))
    with pytest.raises(WeightsError, match=r'does not hold weights of .test_steps_resnet.*missing.*unexpected'):
        load_model(folder)
    with pytest.raises(WeightsError, match='does not hold weights of'):
        timm.create_model('test_steps_resnet', pretrained=True,
                          pretrained_cfg_overlay=dict(file=str(folder / WEIGHTS_NAME), num_classes=10))


def test_class_count_mismatch_is_a_clear_error(trained):
    file = str(trained[1] / WEIGHTS_NAME)
    for kwargs in (dict(), dict(num_classes=10)):  # timm would fail to load the head, or drop it without a word
        with pytest.raises(WeightsError, match=r'classifier for 10 classes but the pretrained config says 1000.*'
                                               r'num_classes=10'):
            timm.create_model('test_steps_resnet', pretrained=True, pretrained_cfg_overlay=dict(file=file), **kwargs)
    # a backbone has no head to load: the same file gives its features
    backbone = timm.create_model('test_steps_resnet', pretrained=True, features_only=True,
                                 pretrained_cfg_overlay=dict(file=file))
    ref = safetensors.torch.load_file(file)
    assert torch.equal(dict(backbone.named_parameters())['conv1.weight'], ref['conv1.weight'])


@pytest.mark.parametrize('text,match', [
    ('{"architecture": "test_steps_resnet", ', 'is not valid JSON'),
    ('{"model_type": "bert", "hidden_size": 768}', r"is not a timm model config \(found \['hidden_size'"),
    ('{"architecture": "test_steps_resnet", "pretrained_cfg": {"colour": 1}}', 'keys timm does not know'),
    ('{"architecture": "no_such_net", "pretrained_cfg": {}}', 'which timm does not know'),
])
def test_corrupt_or_foreign_config_is_a_clear_error(copy_of, text, match):
    folder = copy_of()
    (folder / CONFIG_NAME).write_text(text)
    with pytest.raises(WeightsError, match=match):
        load_model(folder)


def test_missing_files_are_clear_errors(copy_of, tmp_path):
    with pytest.raises(FileNotFoundError, match='does not exist'):
        read_config(tmp_path / 'nowhere')
    folder = copy_of()
    (folder / WEIGHTS_NAME).unlink()
    with pytest.raises(WeightsError, match=f'has no {WEIGHTS_NAME}'):
        load_model(folder)


def test_export_is_atomic(trained, tmp_path, monkeypatch):
    """A failing check leaves the folder as it was: no half-written or temporary files."""
    run, _ = trained
    out = tmp_path / 'w'
    out.mkdir()
    (out / 'README.md').write_text('model card')

    def fail(*args, **kwargs):
        raise WeightsError('check failed')

    monkeypatch.setattr(stepsnet.weights, '_check_export', fail)
    with pytest.raises(WeightsError, match='check failed'):
        export_weights(run / 'best.pth', out, force=True)
    assert os.listdir(out) == ['README.md']


def test_export_refuses_a_folder_in_use_without_force(trained, tmp_path, capsys):
    """Weights already in the folder (here another run's) are kept, with one line naming the folder and its files."""
    run, out = trained
    other = tmp_path / 'other'
    export_weights(timm.create_model('test_steps_resnet', num_classes=3), other)
    (other / 'notes.txt').write_text('mine')
    before = {f: ((other / f).read_bytes(), (other / f).stat().st_mtime_ns) for f in os.listdir(other)}
    assert main(['export-weights', str(run / 'best.pth'), '--out', str(other)]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [
        f"stepsnet export-weights: error: output folder '{other}' is not empty (it holds config.json, "
        f"model.safetensors, notes.txt); choose a new or empty folder, or add --force (force=True) to replace its "
        f"config.json and model.safetensors"]
    assert {f: ((other / f).read_bytes(), (other / f).stat().st_mtime_ns) for f in os.listdir(other)} == before
    assert main(['export-weights', str(run / 'best.pth'), '--out', str(other), '--force']) == 0
    assert read_config(other)['num_classes'] == 10 and (other / 'notes.txt').read_text() == 'mine'


def test_eval_takes_the_task_from_the_checkpoint(trained, capsys):
    run, _ = trained
    assert main(['eval', '--checkpoint', str(run / 'best.pth'), '--workers', '0', '--no-progress']) == 0
    assert capsys.readouterr().out.startswith('test_steps_resnet on digits/val: top-1 ')


def test_export_errors(trained, tmp_path):
    run, _ = trained
    assert main(['export-weights', str(run / 'best.pth'), '--out', str(tmp_path), '--ema']) == 2
    with pytest.raises(WeightsError, match='no EMA weights'):
        export_weights(run / 'best.pth', tmp_path, use_ema=True)
    with pytest.raises(FileNotFoundError):
        export_weights(tmp_path / 'missing.pth', tmp_path)
    features = timm.create_model('test_steps_resnet', features_only=True)
    with pytest.raises(WeightsError, match='expected a classifier built by timm.create_model'):
        export_weights(features, tmp_path)
    odd = timm.create_model('test_steps_resnet', act_layer=torch.nn.SiLU)
    with pytest.raises(WeightsError, match='act_layer.*cannot be written to config.json'):
        export_weights(odd, tmp_path)
    export_weights(odd, tmp_path, model_args=dict(act_layer='silu'))  # a serialisable replacement
    assert read_config(tmp_path)['model_args']['act_layer'] == 'silu'


def test_timm_alone_needs_the_one_import(tmp_path, one_thread):
    """timm (1.0.x) has no plugin hook: its registry holds only what has been imported, so a fresh process that
    imports timm alone cannot build a Steps folder; ``import stepsnet``, even after timm, is all it needs."""
    torch.manual_seed(0)
    export_weights(timm.create_model('test_steps_resnet', num_classes=3), tmp_path / 'w')
    script = f'''
import sys, timm
assert 'stepsnet' not in sys.modules
try:
    timm.create_model('local-dir:{tmp_path / 'w'}', pretrained=True)
    print('loaded without stepsnet')
except RuntimeError as e:
    print(e)
import stepsnet
print(type(timm.create_model('local-dir:{tmp_path / 'w'}', pretrained=True)).__name__)
'''
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get('PYTHONPATH', ''), OMP_NUM_THREADS='1')
    done = subprocess.run([sys.executable, '-c', script], env=env, capture_output=True, text=True, timeout=300,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines()[-2:] == ['Unknown model (test_steps_resnet)', 'StepsResNet']
