"""The task table (stepsnet.utils.tasks) is the one place that names the tasks: everything that lists them reads it,
and every 'module:name' string the package resolves at run time resolves."""
import dataclasses
import importlib
import os
import subprocess
import sys

import pytest

from stepsnet.utils.tasks import (
    DEFAULT_TASK,
    LOCAL_RECIPES,
    TASKS,
    dynamic_imports,
    paper_recipes,
    resolve,
    task_of_command,
    task_of_kind,
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize('target', dynamic_imports())
def test_every_module_name_string_of_the_task_table_resolves(target):
    from stepsnet.compare.adapter import TaskAdapter
    found = resolve(target)
    assert isinstance(found, TaskAdapter) if target.endswith(':ADAPTER') else callable(found)


@pytest.mark.parametrize('package', ['stepsnet', 'stepsnet.utils'])
def test_every_lazy_name_of_a_package_resolves_to_its_modules_own(package):
    """The names a package imports on first use (its ``_LAZY`` table, which the import linter cannot see) exist in
    the modules named, and are the objects those modules define."""
    pkg = importlib.import_module(package)
    assert pkg._LAZY
    for name, module in pkg._LAZY.items():
        target = importlib.import_module(module if module.startswith('stepsnet') else f'{package}.{module}')
        assert getattr(pkg, name) is getattr(target, name), (package, name, module)
        assert name in dir(pkg), (package, name)


def test_every_command_module_registers_and_names_a_config_that_resolves():
    from stepsnet.cli import COMMANDS
    for name in COMMANDS:
        module = importlib.import_module(name)
        assert callable(module.register), name
        for attr in ('CONFIG', 'DET_CONFIG', 'SEG_CONFIG'):
            if hasattr(module, attr):
                assert dataclasses.is_dataclass(resolve(getattr(module, attr))), (name, attr)


def test_resolve_says_what_is_wrong():
    with pytest.raises(ValueError, match='not a "module:name" string'):
        resolve('stepsnet.utils.tasks')
    with pytest.raises(AttributeError):
        resolve('stepsnet.utils.tasks:no_such_thing')


@pytest.mark.parametrize('task', list(TASKS))
def test_each_row_is_consistent(task):
    t = TASKS[task]
    config_class, load_config = resolve(t.config), resolve(t.load_config)
    assert isinstance(load_config(), config_class)  # the loader builds the row's config class
    assert os.path.isdir(os.path.join(REPO, t.recipes_dir))
    assert task_of_kind(t.kind) == task and task_of_command(t.train_command) == task
    assert task_of_command(t.eval_command) == task


def test_the_places_that_list_tasks_read_the_table():
    from stepsnet.cli.dispatch import EVAL_COMMANDS, TRAIN_COMMANDS
    from stepsnet.data.layouts import LAYOUT_TASKS
    from stepsnet.models import factory
    from stepsnet.utils.config import RECIPE_TASKS
    from stepsnet.utils.dryrun import RECIPE_PROCESSES
    assert list(RECIPE_TASKS) == list(TRAIN_COMMANDS) == list(EVAL_COMMANDS) == list(LAYOUT_TASKS) == list(TASKS)
    assert list(RECIPE_PROCESSES) == list(TASKS)
    assert [factory.CLS_KIND, factory.DET_KIND, factory.SEG_KIND, factory.LM_KIND] == [
        TASKS[t].kind for t in ('cls', 'det', 'seg', 'lm')]
    assert DEFAULT_TASK in TASKS and task_of_kind('stepsnet-other') is None and task_of_command('models') is None


def test_every_recipe_is_a_paper_recipe_or_a_local_one():
    """A recipe added to configs/ is dry-run by the tests and the GPU script unless it is listed as local."""
    papers = set(paper_recipes(REPO))
    for task in TASKS.values():
        for name in os.listdir(os.path.join(REPO, task.recipes_dir)):
            if name.endswith('.yaml'):
                path = os.path.join(task.recipes_dir, name)
                assert (path in papers) != (name in LOCAL_RECIPES), path
    assert len(papers) == 15  # 4 ImageNet, 4 COCO, 4 ADE20K, 3 WikiText-103


def test_the_table_loads_no_torch():
    code = ('import sys, stepsnet.utils.tasks as t; t.paper_recipes(); '
            'assert not {"torch", "timm", "numpy"} & set(sys.modules), sorted(sys.modules)')
    out = subprocess.run([sys.executable, '-c', code], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_a_rows_cpu_cuts_and_length_field_are_fields_of_its_config_and_its_command_module_is_registered():
    from stepsnet.cli import COMMANDS
    for t in TASKS.values():
        fields = {f.name for f in dataclasses.fields(resolve(t.config))}
        assert 'batch_size' in t.cpu_batch, t.name
        cut = set(t.cpu_batch) | set(t.tiny_inputs)
        assert cut <= fields, (t.name, cut - fields)
        assert t.length_field in fields, t.name
        assert t.cli and t.cli in COMMANDS, t.name


def test_rows_name_a_known_run_length_and_item():
    for t in TASKS.values():
        assert t.run_length in ('epochs', 'steps') and t.item in ('images', 'tokens'), t.name
        assert (t.dataset_size is None) == (t.item == 'tokens'), t.name  # image sets have a size for dry runs


# modules that may name tasks one by one: each task's own modules, the checkpoint kinds' constants, the
# throughput benchmark, whose "task" is the kind of model it times (image or language), not a training task, and the
# built-in comparisons `stepsnet compare cls` / `lm`, named like the tasks they compare on
OWN_MODULES = ('stepsnet/utils/tasks.py', 'stepsnet/tasks/', 'stepsnet/cli/cls.py', 'stepsnet/cli/dense.py',
               'stepsnet/cli/lm.py', 'stepsnet/compare/task_', 'stepsnet/models/factory.py',
               'stepsnet/analysis/speed', 'stepsnet/cli/benchmark.py', 'stepsnet/compare/builtin.py',
               'stepsnet/cli/compare.py')


def test_only_a_tasks_own_modules_branch_on_its_name():
    """A fifth task is a row of the table and its own modules: nothing else compares a task's name or keys a
    table by it, in the package, the benchmarks or the scripts."""
    import re
    pattern = re.compile(r"""(==|!=)\s*['"](cls|det|seg|lm)['"]|['"](cls|det|seg|lm)['"]\s*(==|!=)"""
                         r"""|TASKS\[['"](cls|det|seg|lm)['"]\]|['"](cls|det|seg|lm)['"]\s*:\s*\S""")
    found = []
    for folder, _, files in (entry for top in ('stepsnet', 'benchmarks', 'scripts')
                             for entry in os.walk(os.path.join(REPO, top))):
        for name in files:
            path = os.path.relpath(os.path.join(folder, name), REPO)
            if name.endswith('.py') and not path.startswith(OWN_MODULES):
                with open(os.path.join(REPO, path), encoding='utf-8') as f:
                    found += [f'{path}:{i}' for i, line in enumerate(f, 1) if pattern.search(line)]
    assert not found, found
