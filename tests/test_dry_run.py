"""``--dry-run``: everything a recipe asks for, a few steps, one evaluation batch, nothing written, a report.

The paper recipes run here at their full model and input size on generated data in their data set's layout, with
their own augmentation, optimizer, schedule, EMA and loss; only the batch is cut to what a 2-core machine holds
(and the data loader workers to none). Each is marked ``recipes``. Swin-T on ImageNet and the small language model
run in every test run; the other ImageNet recipes (5 s each), the detection and segmentation ones (800x1333 and
512x512 inputs, 35-120 s each on 2 cores) and the two larger language models are also marked ``recipes_long`` and
left out of the default run, to keep ``make test`` within 10 minutes on 2 cores (``pytest -m recipes_long`` runs
them).
"""
import json
import math
import os

import pytest

from stepsnet.cli import main
from stepsnet.utils.config import recipe_task
from stepsnet.utils.tasks import TASKS, paper_recipes, resolve

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# the dry runs in every test run (about 5 s each on 2 cores); the others are marked recipes_long
IN_EVERY_RUN = ('swin_tiny_imagenet.yaml', 'small.yaml')
# the recipes keep their autocast: a dry run on a CPU runs it in float32 (bfloat16 is emulated, slow, on most CPUs)


def _paper_recipes():
    out = []
    for path in paper_recipes(REPO):
        name = os.path.basename(path)
        marks = [pytest.mark.recipes] + ([pytest.mark.recipes_long] if name not in IN_EVERY_RUN else [])
        out.append(pytest.param(path, id=name[:-5], marks=marks))
    return out


@pytest.mark.parametrize('recipe', _paper_recipes())
def test_paper_recipe_dry_run_at_full_size(recipe, tmp_path, capsys):
    task = recipe_task(os.path.join(REPO, recipe))
    load_config, train = resolve(TASKS[task].load_config), resolve(TASKS[task].train)
    out_dir = tmp_path / 'run'
    full = load_config(os.path.join(REPO, recipe))
    cfg = load_config(os.path.join(REPO, recipe), dry_run=2, synthetic_data=True, device='cpu',
                      progress=False, out_dir=str(out_dir), **TASKS[task].cpu_batch)
    result = train(cfg)
    report = result['results']['dry_run']
    assert report['steps'] == 2 and report['params_changed'], report
    assert all(math.isfinite(v) for v in report['losses']), report['losses']
    assert report['eval_batch_s'] is not None and report['projected_s'] > 0 and report['peak_memory_bytes'] > 0
    assert not out_dir.exists(), 'a dry run wrote into its run folder'
    # the recipe's own schedule: the full data set's steps (generated data seen at its real size)
    if task == 'lm':
        assert report['total_steps'] == full.max_iters
        assert report['items_per_step'] == cfg.batch_size * full.block_size * cfg.grad_accum
    elif task == 'seg':
        assert report['total_steps'] == full.max_iters and report['eval_batches'] == 2000
    elif task == 'det':
        assert report['total_steps'] == full.epochs * 118_287 and report['eval_batches'] == 5000
    else:
        assert report['total_steps'] == full.epochs * (1_281_167 // cfg.batch_size)
        assert report['eval_batches'] == 50_000 // cfg.batch_size
    text = capsys.readouterr().out
    assert 'whole run here' in text and 'parameters changed: yes' in text


def test_dry_run_writes_nothing_into_the_run_folder(tmp_path, capsys):
    """The CLI's dry run: an existing folder keeps exactly what it held; a missing one is not made; the report goes
    to the JSON file asked for (outside the folder)."""
    held = tmp_path / 'held'
    held.mkdir()
    (held / 'notes.txt').write_text('mine')
    report = tmp_path / 'report.json'
    recipe = os.path.join(REPO, 'configs', 'cls', 'digits_cpu.yaml')
    assert main(['train', '-c', recipe, '--dry-run', '--out-dir', str(held), '--dry-run-report', str(report),
                 '--device', 'cpu', '--batch-size', '16', '--no-progress']) == 0
    assert sorted(os.listdir(held)) == ['notes.txt'] and (held / 'notes.txt').read_text() == 'mine'
    data = json.loads(report.read_text())
    assert data['steps'] == 2 and data['params_changed'] and data['items_per_step'] == 16
    out = capsys.readouterr().out
    assert 'dry run of' in out and 'changed from the recipe: ' in out and 'batch_size 64 -> 16' in out
    assert 'time per step' in out and 'peak memory' in out and 'whole run here' in out
    missing = tmp_path / 'missing'
    assert main(['train', '-c', recipe, '--dry-run', '1', '--out-dir', str(missing), '--device', 'cpu',
                 '--batch-size', '16', '--no-progress']) == 0
    assert not missing.exists()


def test_dry_run_beside_a_finished_run_trains_and_keeps_it(tmp_path):
    """A folder holding a run: a dry run neither refuses it nor touches it (it reads nothing from it)."""
    from stepsnet.data.text import prepare_text
    from stepsnet.tasks.lm import load_config, train_lm
    out = tmp_path / 'run'
    prepare_text(str(tmp_path / 'data'), max_bytes=200_000)  # its own corpus: no test depends on another's folder
    base = dict(out_dir=str(out), max_iters=2, eval_interval=2, eval_iters=1, final_eval_windows=0, device='cpu',
                model='gpt_tiny', block_size=32, progress=False, tensorboard=False, data_dir=str(tmp_path / 'data'))
    train_lm(load_config(os.path.join(REPO, 'configs', 'lm', 'cpu.yaml'), **base))
    before = {p: os.path.getmtime(out / p) for p in os.listdir(out)}
    result = train_lm(load_config(os.path.join(REPO, 'configs', 'lm', 'cpu.yaml'), dry_run=1, **base))
    assert result['results']['dry_run']['steps'] == 1
    assert {p: os.path.getmtime(out / p) for p in os.listdir(out)} == before


def test_synthetic_data_without_dry_run_is_refused(capsys):
    assert main(['train-lm', '-c', os.path.join(REPO, 'configs', 'lm', 'cpu.yaml'), '--synthetic-data']) != 0
    assert 'synthetic_data and dry_run_report are for dry runs' in capsys.readouterr().err


def test_compare_dry_run_trains_each_arm_once_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / 'compare'
    assert main(['compare', 'lm', '--dry-run', '1', '--out', str(out), '--seeds', '2', '--set', 'max_iters=40',
                 'model_kwargs={"n_layer": 2}', '--threads', '1', '--no-progress']) == 0
    text = capsys.readouterr().out
    assert text.count('whole run here') == 2 and '2 runs (2 seeds)' not in text
    assert not out.exists()


def test_the_header_says_once_that_the_workers_were_capped(tmp_path, capsys, monkeypatch):
    """A recipe's workers above this machine's cores start as many workers as there are cores; the run's header
    says so once. A two-step dry run times one step after the first: one number, not a range."""
    from stepsnet.utils import machine
    monkeypatch.setattr(machine, 'available_cores', lambda: 1)
    monkeypatch.delenv('LOCAL_WORLD_SIZE', raising=False)
    recipe = os.path.join(REPO, 'configs', 'cls', 'digits_cpu.yaml')
    assert main(['train', '-c', recipe, '--dry-run', '2', '--out-dir', str(tmp_path / 'r'), '--device', 'cpu',
                 '--batch-size', '16', '--workers', '4', '--no-progress', '--threads', '1']) == 0
    out = capsys.readouterr().out
    assert out.count("1 data-loader worker (the recipe's 4, capped at this machine's 1 core)") == 1, out
    assert 'median of steps 2-2' not in out and ' s (step 2)' in out
    assert 'on cpu, 1 process, float32' in out  # the report's own counts in the right number


@pytest.fixture(scope='module')
def tiny_amp_dry_run(tmp_path_factory):
    """The medium language-model recipe (bfloat16 autocast) with a tiny model, dry-run on the CPU: its report, its
    printout, the config it ran and whether autocast was on in any loss."""
    import contextlib
    import io

    import torch

    from stepsnet.tasks import lm as module
    recipe = os.path.join(REPO, 'configs', 'lm', 'medium.yaml')
    full = module.load_config(recipe)
    assert full.amp and full.amp_dtype == 'bfloat16'  # the point of the test: a recipe that asks for autocast
    cfg = module.load_config(recipe, dry_run=2, synthetic_data=True, device='cpu', progress=False,
                             out_dir=str(tmp_path_factory.mktemp('dry') / 'run'), model='gpt_tiny', block_size=32,
                             batch_size=1, grad_accum=1)
    autocast_seen = []
    loss = module._lm_loss

    def spy(model, batch):
        autocast_seen.append(torch.is_autocast_enabled('cpu'))
        return loss(model, batch)
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out):
        mp.setattr(module, '_lm_loss', spy)
        result = module.train_lm(cfg)
    return result['results']['dry_run'], out.getvalue(), cfg, autocast_seen


def test_dry_run_reports_macs_half_the_counters_flops_and_says_so(tiny_amp_dry_run):
    from stepsnet.utils.dryrun import MAC_HEADER, _macs
    report, text, _, _ = tiny_amp_dry_run
    assert report['train_flops_per_step'] > 0
    assert report['train_macs_per_step'] == report['train_flops_per_step'] // 2
    assert MAC_HEADER in text and "multiply-accumulates; the paper's 'GFLOPs'" in text
    assert f'{_macs(report["train_macs_per_step"])} per training step' in text
    assert "flop_counter's FLOPs / 2" in text and 'FLOPs:' not in text


def test_dry_run_prints_the_a100_floor_of_the_library(tiny_amp_dry_run):
    from stepsnet.utils.dryrun import a100_floor
    report, text, cfg, _ = tiny_amp_dry_run
    per_item = report['train_flops_per_step'] / (report['items_per_micro_batch'] * report['accumulation'])
    floor = a100_floor('lm', cfg, per_item, report['items_per_step'], report['total_steps'])
    assert floor.items == cfg.max_iters * cfg.batch_size * cfg.block_size * cfg.grad_accum  # the recipe's 1 process
    assert report['a100_floor_h'] == pytest.approx(floor.hours)
    assert (f'A100 floor:        {floor.hours:,.1f} h at 40% of the bf16 peak, an assumption, not a measurement'
            in text), text


def test_cpu_dry_run_of_a_bf16_recipe_runs_in_float32_and_says_so(tiny_amp_dry_run):
    report, text, _, autocast_seen = tiny_amp_dry_run
    assert autocast_seen and not any(autocast_seen)  # every training step's loss, and no autocast in any
    assert report['amp'] == '' and report['recipe_amp'] == 'bfloat16'
    assert 'on cpu, 1 process, float32' in text
    note = "on cpu the step runs in float32; the recipe's bfloat16 autocast applies on a GPU"
    assert note in report['notes'] and text.count(note) == 2  # said when the run starts and in the report
    assert report['steps'] == 2 and report['params_changed'] and report['eval_batch_s'] is not None


def test_a100_floor_counts_the_recipes_items():
    """The floor docs/full-scale.md tabulates: the recipe's items at its own batch and process count."""
    from stepsnet.utils.dryrun import A100_BF16_PEAK, ASSUMED_UTILISATION, a100_floor
    lm = a100_floor('lm', dict(batch_size=16, block_size=512, grad_accum=4, max_iters=50_000), 100.0, 2048, 50_000)
    assert lm.items == 16 * 512 * 4 * 50_000 and lm.counted == '1 x 16 x 512 x 4 tokens x 50,000 steps'
    assert lm.hours == pytest.approx(100.0 * lm.items / (A100_BF16_PEAK * ASSUMED_UTILISATION) / 3600)
    seg = a100_floor('seg', dict(batch_size=2, max_iters=160_000), 1.0, 2, 160_000)
    assert seg.items == 8 * 2 * 160_000
    cls = a100_floor('cls', dict(batch_size=128), 1.0, 8, 1000)  # epochs: the same images at any batch
    assert cls.items == 8000 and cls.macs == cls.flops / 2


def test_a100_floor_of_a_cut_dry_run_is_the_recipes():
    """A dry run of fewer epochs or a smaller batch than its recipe (``ran``) still counts the recipe's items."""
    from stepsnet.utils.dryrun import a100_floor
    recipe = dict(batch_size=16, block_size=None, grad_accum=4, max_iters=50_000)
    ran = dict(recipe, batch_size=2, grad_accum=1)
    lm = a100_floor('lm', recipe, 100.0, 2 * 512, 50_000, ran=ran)  # the context read off the dry run's tokens
    assert lm.items == 16 * 512 * 4 * 50_000 and lm.counted == '1 x 16 x 512 x 4 tokens x 50,000 steps'
    seg = a100_floor('seg', dict(batch_size=2, max_iters=160_000), 1.0, 1, 80_000,
                     ran=dict(batch_size=1, max_iters=80_000))
    assert seg.items == 8 * 2 * 160_000
    cls = a100_floor('cls', dict(batch_size=128, epochs=300), 1.0, 8, 1000, ran=dict(batch_size=8, epochs=1))
    assert cls.items == 8 * 1000 * 300 and cls.counted == '2,400,000 images'


def test_cli_dry_run_with_a_cut_batch_prints_the_recipes_floor(tmp_path, capsys):
    """``--batch-size 2`` on a dry run of a recipe whose run length is in steps: the printed floor counts the
    recipe's batch (32), the projection the run as configured."""
    from stepsnet.data.text import prepare_text
    prepare_text(str(tmp_path / 'data'), max_bytes=200_000)
    report = tmp_path / 'report.json'
    recipe = os.path.join(REPO, 'configs', 'lm', 'cpu.yaml')
    assert main(['train-lm', '-c', recipe, '--dry-run', '1', '--batch-size', '2', '--device', 'cpu', '--no-progress',
                 '--data-dir', str(tmp_path / 'data'), '--out-dir', str(tmp_path / 'run'),
                 '--dry-run-report', str(report)]) == 0
    data = json.loads(report.read_text())
    assert data['items_per_step'] == 2 * 128
    assert data['a100_floor_items'] == '1 x 32 x 128 x 1 tokens x 2,000 steps', data['a100_floor_items']
    assert 'batch_size 32 -> 2' in capsys.readouterr().out
