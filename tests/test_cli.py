"""One error surface: every command's --help, and a bad value for each ends in one line and an exit code, never in a
Python traceback; user mistakes leave nothing changed on disk."""
import os

import pytest
import torch

from stepsnet.cli import build_parser, main

pytestmark = pytest.mark.usefixtures('one_thread')


def _commands():
    """Every (sub)command path of the parser, e.g. ('data', 'prepare-text')."""
    import argparse

    def walk(parser, prefix):
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            yield prefix
            return
        for name, child in subs[0].choices.items():
            yield from walk(child, prefix + (name,))
    return list(walk(build_parser(), ()))


COMMANDS = _commands()


def test_every_command_is_covered_below():
    assert set(COMMANDS) == set(BAD)


@pytest.mark.parametrize('command', COMMANDS, ids=' '.join)
def test_help(command, capsys):
    with pytest.raises(SystemExit) as e:
        main(list(command) + ['--help'])
    assert e.value.code == 0
    assert 'usage: stepsnet' in capsys.readouterr().out


# one invalid value per command and what the one-line message must say
BAD = {
    ('models',): (['no_such_model_xyz'], 'no registered Steps model or baseline matches'),
    ('data', 'prepare-text'): (['--out', '{tmp}/t', '--val-fraction', '2'], 'strictly between 0 and 1, got 2'),
    ('data', 'synth-coco'): (['--out', '{tmp}/c', '--max-shapes', '0'], 'expected a whole number >= 1'),
    ('data', 'synth-ade'): (['--out', '{tmp}/a', '--size', '96,x'], '--size must be two whole numbers H,W'),
    ('data', 'mnist1d'): (['--num-samples', '15', '--cache-dir', '{tmp}/m'], 'must be a positive multiple of 10'),
    ('train-lm',): (['--batch-size', '0', '--out-dir', '{tmp}/lm'], 'batch_size must be >= 1, got 0'),
    ('eval-lm',): (['--checkpoint', '{tmp}/x.pth', '--windows', '0'], 'expected a whole number >= 1'),
    ('sample',): (['--checkpoint', '{tmp}', '--num-samples', '1'], 'is a folder; expected a checkpoint file'),
    ('train',): (['--img-size', '-5', '--out-dir', '{tmp}/cls'], 'img_size must be >= 1'),
    ('train-cls',): (['--img-size', '0', '--out-dir', '{tmp}/cls'], 'img_size must be >= 1'),
    ('eval',): (['--checkpoint', '{tmp}/missing.pth'], "checkpoint '{tmp}/missing.pth' does not exist"),
    ('validate',): (['--checkpoint', '{tmp}/missing.pth'], "checkpoint '{tmp}/missing.pth' does not exist"),
    ('train-det',): (['--epochs', '-1', '--out-dir', '{tmp}/det'], 'epochs must be >= 1, got -1'),
    ('eval-det',): (['--checkpoint', '{tmp}/x.pth', '--batch-size', '0'], 'expected a whole number >= 1'),
    ('train-seg',): (['--crop-size', '96,x', '--out-dir', '{tmp}/seg'], 'expected int values'),
    ('eval-seg',): (['--checkpoint', '{tmp}/x.pth', '--stride', '0,64'], 'expected whole numbers >= 1'),
    ('compare',): (['lm', '--minutes', '-1', '--out', '{tmp}/cmp'], 'argument --minutes: expected a finite number > 0'),
    ('benchmark',): (['--pair', 'steps_resnet18,resnet18'], 'is swapped'),
    ('analyze', 'shortcut'): (['--out-dir', '{tmp}/sc'], 'nothing to measure'),
    ('analyze', 'mask'): (['--model', 'resnet18', '--no-progress'], 'has no Steps module'),
    ('analyze', 'drop-step'): (['--checkpoint', '{tmp}/nope.pth'], 'nope.pth'),
    ('analyze', 'depth'): (['--family', 'swin', '--blocks', '12'], 'Steps-Swin-like model of 12 blocks'),
    ('analyze', 'pilot'): (['--blocks', '6', '--out', '{tmp}/p'], 'needs a multiple of 4 blocks'),
    ('export-weights',): (['{tmp}/missing.pth', '--out', '{tmp}/w'], 'missing.pth'),
}


@pytest.mark.parametrize('command', sorted(BAD), ids=' '.join)
def test_one_bad_value_is_one_line_and_changes_nothing(command, tmp_path, capsys):
    args, message = BAD[command]
    args = [a.replace('{tmp}', str(tmp_path)) for a in args]
    before = sorted(os.listdir(tmp_path))
    try:
        code = main(list(command) + args)
    except SystemExit as e:  # argparse's own usage errors
        code = e.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert message.replace('{tmp}', str(tmp_path)) in err
    lines = err.strip().splitlines()
    assert 'Traceback' not in err and len(lines) == 1, err  # argparse's errors too: no usage before the line
    assert lines[0].startswith(f'stepsnet {command[0]}') and ': error: ' in lines[0]
    assert sorted(os.listdir(tmp_path)) == before


def test_ctrl_c_says_how_to_continue(monkeypatch, tmp_path, capsys):
    from stepsnet.tasks import classification

    def interrupted(cfg):
        raise KeyboardInterrupt
    monkeypatch.setattr('stepsnet.tasks.classification.train_classification', interrupted)
    assert classification  # the task module stays importable
    code = main(['train', '--config', 'configs/cls/digits_cpu.yaml', '--out-dir', str(tmp_path / 'r')])
    err = capsys.readouterr().err
    assert code == 130
    assert f'interrupted; continue the run with: stepsnet train --config configs/cls/digits_cpu.yaml --out-dir ' \
           f'{tmp_path / "r"} --resume' in err and 'Traceback' not in err


def test_debug_shows_the_traceback():
    with pytest.raises(ValueError, match='batch_size must be >= 1'):
        main(['--debug', 'train-lm', '--batch-size', '0'])


def test_no_gpu_is_a_clear_error(capsys):
    if torch.cuda.is_available():
        pytest.skip('this machine has a GPU')
    assert main(['validate', '--model', 'test_steps_resnet', '--device', 'cuda', '--no-progress']) == 2
    assert 'no CUDA device is available' in capsys.readouterr().err


def test_generators_do_not_overwrite_without_force(tmp_path, capsys):
    out = tmp_path / 'coco'
    assert main(['data', 'synth-coco', '--out', str(out), '--num-train', '1', '--num-val', '1']) == 0
    ann = out / 'annotations' / 'instances_train2017.json'
    before = ann.read_bytes()
    capsys.readouterr()
    assert main(['data', 'synth-coco', '--out', str(out), '--num-train', '2', '--num-val', '1', '--seed', '3']) == 2
    assert 'force' in capsys.readouterr().err and ann.read_bytes() == before
    assert main(['data', 'synth-coco', '--out', str(out), '--num-train', '2', '--num-val', '1', '--force']) == 0
    assert ann.read_bytes() != before


def test_flag_conventions(tmp_path, capsys):
    """Lists with commas or spaces, mappings as KEY=VALUE, booleans as --x / --no-x, 'none' clears a field."""
    from stepsnet.cli.common import load_with_flags
    from stepsnet.tasks.detection import DetectionConfig, load_config
    parser = build_parser('train-det')
    args = parser.parse_args(['train-det', '--lr-steps', '8,11', '--anchor-sizes', '16', '32', '64', '128', '256',
                              '--model-kwargs', 'drop_path_rate=0.2', 'depth=[1,2]', '--no-progress',
                              '--max-iters', 'none', '--resume'])
    cfg = load_with_flags(load_config, None, args, DetectionConfig)
    assert cfg.lr_steps == [8, 11] and cfg.anchor_sizes == [16, 32, 64, 128, 256]
    assert cfg.model_kwargs == {'drop_path_rate': 0.2, 'depth': [1, 2]}
    assert cfg.progress is False and cfg.max_iters is None and cfg.resume == 'last'
    with pytest.raises(SystemExit):
        parser.parse_args(['train-det', '--model-kwargs', 'drop_path_rate'])
    assert 'expected KEY=VALUE pairs' in capsys.readouterr().err


MORE_BAD = [
    (['train', '--model-kwargs', 'bogus_arg=1', '--out-dir', '{tmp}/r', '--no-progress'],
     'does not take the arguments'),
    (['train', '--config', '{tmp}'], 'is a folder; expected a YAML file'),
    (['sample', '--checkpoint', '{tmp}/x.pth', '--num-samples', '0'], 'expected a whole number >= 1, got 0'),
    (['benchmark', '--pair', 'resnet18,steps_resnet50'], 'not a pair of twins'),
    (['data', 'prepare-text', '--out', '{tmp}/t', '--vocab-size', '300'], 'vocab_size'),
    (['train-det', '--backbone-weights', '{tmp}/w.pth', '--out-dir', '{tmp}/d', '--data-dir', '{tmp}/coco',
      '--backbone', 'test_steps_vit', '--device', 'cpu'], 'do not fit'),
]


@pytest.mark.parametrize('args,message', MORE_BAD, ids=lambda v: v if isinstance(v, str) else ' '.join(v[:2]))
def test_smaller_user_mistakes(args, message, tmp_path, capsys):
    if '--backbone-weights' in args:  # a real data set, so the backbone is the first thing that fails
        import timm

        from stepsnet.data.layouts import write_coco
        write_coco(str(tmp_path / 'coco'), train_images=1, val_images=1, size=(80, 64), shape_classes=True)
        torch.save(timm.create_model('test_resnet').state_dict(), tmp_path / 'w.pth')
    before = sorted(os.listdir(tmp_path))
    args = [a.replace('{tmp}', str(tmp_path)) for a in args]
    try:
        code = main(args)
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err
    assert code == 2 and message in err and 'Traceback' not in err, err
    assert sorted(os.listdir(tmp_path)) == before


def test_a_recipe_names_its_command(tmp_path, capsys):
    """An LM recipe given to the detection command says which command trains it; nothing is created."""
    out = tmp_path / 'det'
    assert main(['train-det', '-c', 'configs/lm/cpu.yaml', '--out-dir', str(out)]) == 2
    err = capsys.readouterr().err
    assert "'configs/lm/cpu.yaml' is a recipe of task 'lm' (language modelling); train it with `stepsnet train -c " \
           "configs/lm/cpu.yaml` (or `stepsnet train-lm`)" in err
    assert err.count('\n') == 1 and not out.exists()


def test_every_recipe_names_its_task():
    import glob

    from stepsnet.utils.config import recipe_task
    recipes = [p for p in glob.glob('configs/*/*.yaml') if not p.startswith(os.path.join('configs', 'protocols'))]
    assert recipes and all(recipe_task(p) == os.path.basename(os.path.dirname(p)) for p in recipes)


def test_train_hands_the_recipe_to_its_task(tmp_path, capsys):
    """`stepsnet train -c configs/lm/cpu.yaml` trains the language model (a few steps on a small corpus)."""
    from stepsnet.data.text import prepare_text
    from stepsnet.utils.checkpoint import load_checkpoint
    data = tmp_path / 'data'
    prepare_text(str(data), max_bytes=60_000)
    out = tmp_path / 'lm'
    assert main(['train', '-c', 'configs/lm/cpu.yaml', '--data-dir', str(data), '--out-dir', str(out),
                 '--max-iters', '2', '--warmup-iters', '1', '--batch-size', '2', '--block-size', '32',
                 '--eval-interval', '2', '--eval-iters', '1', '--final-eval-windows', '2', '--device', 'cpu',
                 '--no-progress', '--no-tensorboard']) == 0
    assert 'gpt_cpu: 2 steps' in capsys.readouterr().out
    assert load_checkpoint(out / 'last.pth', 'stepsnet-lm')['progress']['step'] == 2


def test_misspelt_command_and_model_get_close_matches(capsys):
    assert main(['trian']) == 2
    assert "unknown command 'trian'" in capsys.readouterr().err
    assert main(['validate', '--model', 'resnet1', '--no-progress']) == 2
    assert "did you mean 'resnet18'" in capsys.readouterr().err
    assert main(['models', 'steps_resnt50']) == 2
    assert "did you mean 'steps_resnet50'" in capsys.readouterr().err


def test_eval_of_a_language_model_checkpoint_is_the_language_models(tmp_path, capsys):
    from stepsnet.cli import dispatch
    from stepsnet.utils.checkpoint import save_checkpoint
    path = tmp_path / 'last.pth'
    save_checkpoint({'model': {}, 'meta': {}}, path, 'stepsnet-lm')
    assert dispatch.resolve('eval', ['--checkpoint', str(path)]) == 'eval-lm'
    assert main(['eval', '--checkpoint', str(path)]) == 2  # eval-lm reads it (tests/test_lm_train.py scores one)
    err = capsys.readouterr().err
    assert err.startswith('stepsnet eval: error: ') and 'does not say how its model was built' in err


def test_train_help_of_a_recipe_lists_its_tasks_fields(capsys):
    with pytest.raises(SystemExit) as e:
        main(['train', '-c', 'configs/lm/cpu.yaml', '--help'])
    out = capsys.readouterr().out
    assert e.value.code == 0 and out.startswith('usage: stepsnet train-lm') and '--max-iters' in out


def test_a_recipe_without_a_task_belongs_to_the_command(tmp_path):
    from stepsnet.cli import dispatch
    recipe = tmp_path / 'r.yaml'
    recipe.write_text('epochs: 1\n')
    assert dispatch.resolve('train-det', ['-c', str(recipe)]) is None  # train-det runs it
    assert dispatch.resolve('train', ['-c', str(recipe)]) == 'train-cls'
    assert dispatch.resolve('train', ['--config=configs/seg/synthetic.yaml']) == 'train-seg'
    recipe.write_text('task: nope\n')
    with pytest.raises(ValueError, match="has task 'nope'; expected one of"):
        dispatch.resolve('train', ['-c', str(recipe)])


def _leaf_parsers():
    """Every (sub)command's parser with its config flags added: (command words, parser)."""
    import argparse

    from stepsnet.cli.common import complete_config_flags

    def walk(parser, prefix):
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            complete_config_flags(parser)
            yield prefix, parser
            return
        for name, child in subs[0].choices.items():
            yield from walk(child, prefix + (name,))
    return list(walk(build_parser(), ()))


def test_every_numeric_flag_is_checked_where_it_is_parsed():
    """No flag converts with a bare int / float (a negative size would reach the library as a traceback): each uses
    a checking type of stepsnet.cli.common, or is a config field (its converter names what was expected; the range
    is its config's to check, tests/test_utils_config.py)."""
    import argparse
    bare = []
    for command, parser in _leaf_parsers():
        for action in parser._actions:
            numeric_default = isinstance(action.default, (int, float)) and not isinstance(action.default, bool)
            plain = type(action) is argparse._StoreAction  # an Action of ours (e.g. --seeds) checks its values
            if action.type in (int, float) or (action.type is None and numeric_default and plain):
                bare.append(f'stepsnet {" ".join(command)} {action.option_strings[0]}')
    assert not bare, bare
    assert len(_leaf_parsers()) == len(COMMANDS)


@pytest.mark.parametrize('argv,message', [
    (['models', '--img-size', '-5'], 'argument --img-size: expected a whole number >= 1, got -5'),
    (['benchmark', '--pair', 'a,b', '--warmup', '-1'], 'argument --warmup: expected a whole number >= 0, got -1'),
    (['analyze', 'mask', '--sizes', 'x'], "argument --sizes: expected a whole number, got 'x'"),
    (['sample', '--checkpoint', 'x', '--temperature', '-1'], 'argument --temperature: expected a finite number >= 0'),
    (['validate', '--crop-pct', '1.5'], 'argument --crop-pct: expected a number > 0 and <= 1, got 1.5'),
    (['validate', '--workers', '-2'], 'argument --workers: expected a whole number >= 0, got -2'),
    (['train', '--epochs', 'x'], "argument --epochs: expected a whole number, got 'x'"),
    (['train', '--learning-rate', '0.1'], 'unrecognized argument --learning-rate; did you mean --lr?'),
    (['train', '--learning_rate=0.1'], 'unrecognized argument --learning_rate; did you mean --lr?'),
    (['train', '--bs', '8'], 'unrecognized argument --bs; did you mean --batch-size?'),
    (['train', '--output-dir', 'x'], 'unrecognized argument --output-dir; did you mean --out-dir?'),
    (['train', '--num-workers', '2'], 'unrecognized argument --num-workers; did you mean --workers?'),
    (['train', '--wd', '0.1'], 'unrecognized argument --wd; did you mean --weight-decay?'),
    (['train', '--num-epochs', '2'], 'unrecognized argument --num-epochs; did you mean --epochs?'),
    (['train-lm', '--batch_size', '2'], 'unrecognized argument --batch_size; did you mean --batch-size?'),
    (['export-weights', 'x.pth', '--output', 'y'], 'unrecognized argument --output; did you mean --out?'),
    (['analyze'], 'the following arguments are required: ANALYSIS'),
])
def test_usage_errors_are_one_line_with_the_real_flag(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and len(err.strip().splitlines()) == 1 and 'usage:' not in err, err
    assert message in err and err.rstrip().endswith(('lists the flags)', 'lists the subcommands)')), err
    assert '--drop-rate' not in err


def test_unknown_command_is_one_line(capsys):
    assert main(['trian']) == 2
    err = capsys.readouterr().err
    assert err == "stepsnet: error: unknown command 'trian'; did you mean 'train'? (`stepsnet --help` lists the " \
                  "commands)\n"


@pytest.mark.parametrize('argv,message', [
    (['compare', '--minutes', '3'], "--minutes applies to `stepsnet compare lm` only: it sets each language model's "
                                    'training budget'),
    (['compare', 'lm', '--blocks', '4'], '--blocks applies to `stepsnet compare mnist1d` and `stepsnet compare depth` '
                                         'only'),
    (['compare', 'depth', '--baseline', 'resnet18'],
     '--baseline applies to `stepsnet compare lm` and `stepsnet compare cls` only: it names the baseline model'),
    (['compare', 'lm', '--steps-kwargs', 'depth=2'], '--steps-kwargs applies to `stepsnet compare cls` only'),
    (['compare', '--synthetic-data'], '--synthetic-data applies to --dry-run only'),
    (['compare', '--render', 'x', '--seeds', '2'], '--seeds cannot be combined with --render, which trains nothing'),
    (['models', '--twins', '--format', 'csv'], '--format cannot be combined with --twins'),
    (['models', '--coverage', '--twins'], '--coverage cannot be combined with --twins'),
    (['benchmark', '--pair', 'a,b', '--compile-backend', 'eager'], '--compile-backend applies to --compile only'),
])
def test_a_flag_that_does_not_apply_is_refused_with_why(argv, message, tmp_path, capsys):
    assert main(argv + (['--out', str(tmp_path / 'c')] if argv[0] == 'compare' else [])) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / 'c').exists()


@pytest.mark.parametrize('module,recipe,overrides,message', [
    ('classification', 'configs/cls/depth_digits.yaml', dict(epochs=2),
     'warmup_epochs (2) is not less than epochs (2): the learning-rate warm-up covers the whole run'),
    ('classification', None, dict(epochs=1), 'warmup_epochs (5) is not less than epochs (1)'),
    ('lm', 'configs/lm/cpu.yaml', dict(max_iters=30), 'warmup_iters (30) is not less than max_iters (30)'),
    ('segmentation', None, dict(max_iters=10, warmup_iters=10), 'warmup_iters (10) is not less than max_iters (10)'),
])
def test_a_warmup_as_long_as_the_run_is_a_warning(module, recipe, overrides, message):
    import importlib
    cfg = importlib.import_module(f'stepsnet.config.{module}').load_config(recipe, **overrides)
    warnings = cfg.check_schedule()
    assert len(warnings) == 1 and message in warnings[0] and '0 turns the warm-up off' in warnings[0]
    assert importlib.import_module(f'stepsnet.config.{module}').load_config(recipe).check_schedule() == []


def test_the_warmup_warning_is_printed_once_and_the_run_goes_on(tmp_path, capsys):
    """`stepsnet train --epochs 1` (the default recipe warms up for 5 epochs) warns, then trains (a dry run here)."""
    assert main(['train', '--epochs', '1', '--dry-run', '1', '--workers', '0', '--out-dir', str(tmp_path / 'r')]) == 0
    err = capsys.readouterr().err
    assert err.count('warning: warmup_epochs (5) is not less than epochs (1)') == 1


def test_tensorboard_asked_for_and_missing_is_refused_and_silent_by_default(monkeypatch, tmp_path, capsys):
    import builtins

    import stepsnet.config.run as run_config
    from stepsnet.utils.logging import MetricWriter
    monkeypatch.setattr(run_config, 'installed', lambda name: name != 'tensorboard')
    assert main(['train', '--tensorboard', '--out-dir', str(tmp_path / 'r')]) == 2
    err = capsys.readouterr().err
    assert 'tensorboard is asked for, but the tensorboard package is not installed: pip install tensorboard' in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / 'r').exists()

    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith('torch.utils.tensorboard'):
            raise ModuleNotFoundError("No module named 'tensorboard'")
        return real_import(name, *args, **kwargs)
    monkeypatch.setattr(builtins, '__import__', no_tensorboard)
    writer = MetricWriter(str(tmp_path), tensorboard=None)  # the default: the CSV log only, nothing said
    writer.log({'iter': 1, 'loss': 0.5})
    assert writer.tb is None and (tmp_path / 'log.csv').read_text() == 'iter,loss\n1,0.5\n'
    with pytest.raises(ValueError, match='tensorboard is asked for, but it cannot be used'):
        MetricWriter(str(tmp_path), tensorboard=True)


def test_a_shadowing_stepsnet_folder_is_named(monkeypatch, tmp_path, capsys):
    import sys
    import types

    from stepsnet.cli import shadowing_package
    assert shadowing_package() is None
    clone = types.ModuleType('stepsnet')
    clone.__path__ = [str(tmp_path / 'stepsnet')]  # a clone's root: a namespace package
    monkeypatch.setitem(sys.modules, 'stepsnet', clone)
    assert shadowing_package() == str(tmp_path / 'stepsnet')
    with pytest.raises(SystemExit):
        main(['models', '--img-size', '0'])
    warning = capsys.readouterr().err.splitlines()[0]
    assert warning.startswith(f'stepsnet: warning: `import stepsnet` finds {tmp_path / "stepsnet"}, not the stepsnet')
