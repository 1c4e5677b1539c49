"""The one table of the tasks: every fact about a task that more than one part of the package needs.

A task is image classification (``cls``), language modelling (``lm``), object detection (``det``) or semantic
segmentation (``seg``). What the rest of the package knows about a task it reads from :data:`TASKS`: the recipe's
``task:`` value, the config dataclass and the train and evaluate functions (as ``'module:name'`` strings, so that
this module loads nothing: the command line answers ``--help`` without torch), the format tag of its checkpoints, the
paper's data set (its size, and the writer of the on-disk layout that dry runs generate), the process count its paper
recipes are written for, what a run's length and a batch's items are counted in (the dry run's A100 floor), the
cut of a recipe's batch and inputs that a 2-core CPU runs in seconds, its adapter for ``stepsnet compare`` where it
has one, and its command-line verbs. The paper's recipes are listed here too
(:func:`paper_recipes`), for the dry-run tests and the GPU script.

Adding a task means adding a row here and writing the task's own modules (its config in ``stepsnet/config/``, its
training in ``stepsnet/tasks/``, its command in ``stepsnet/cli/``, its recipes in ``configs/``, its data layout's
writer in ``stepsnet/data/`` and, for comparisons, ``stepsnet/compare/task_<name>.py``); nothing else names the
tasks one by one (a test checks it). Every ``'module:name'`` string of the package is listed by
:func:`dynamic_imports` and resolved by a test.
"""
import importlib
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

__all__ = ['Task', 'TASKS', 'TASK_NAMES', 'DEFAULT_TASK', 'task_of_kind', 'task_of_command', 'LOCAL_RECIPES',
           'paper_recipes', 'resolve', 'dynamic_imports']


@dataclass(frozen=True)
class Task:
    """One task. ``config``, ``train`` and ``evaluate`` are ``'module:name'`` strings (see :func:`resolve`)."""
    name: str                # the recipe's ``task:`` value and the folder of its recipes under configs/
    title: str               # what it trains, in words
    config: str              # the run config dataclass
    load_config: str         # the recipe loader (YAML -> config)
    train: str               # train(cfg) -> summary with 'results'
    evaluate: str            # the evaluation of a checkpoint
    kind: str                # the format tag of its checkpoints and run folders
    train_command: str       # `stepsnet <train_command>` (also `stepsnet train -c RECIPE`)
    eval_command: str        # `stepsnet <eval_command>` (also `stepsnet eval --checkpoint FILE`)
    dataset: str             # the paper's data set, whose layout `--synthetic-data` generates
    recipe_processes: int    # the process count its paper recipes are written for (their headers)
    write_layout: str        # writes that data set's on-disk layout: (root, seed=, force=, **kw) -> data_dir
    run_length: str          # what its recipes count a run in: 'epochs' or 'steps' (``max_iters``)
    item: str                # what a step's batch holds, as the A100 floor counts it: 'images' or 'tokens'
    cli: str = ''            # its command module (defines register(subparsers)); tasks may share one
    compare: str = ''        # its adapter for `stepsnet compare` (stepsnet.compare.adapter.TaskAdapter); '': none
    # (training, validation) items of the paper's data set, which a dry run on generated data sees its few items as
    # (so that its steps per epoch, schedule and projection are the recipe's); None: a run counted in tokens
    dataset_size: Optional[Tuple[int, int]] = None
    # what a 2-core CPU with 24 GiB runs of a paper recipe in seconds: the batch cut per process (the full-size dry
    # runs of the tests), and the smaller inputs a CPU check of the GPU script adds to it (`gpu_recipes.py --tiny`)
    cpu_batch: Dict[str, Any] = field(default_factory=dict)
    tiny_inputs: Dict[str, Any] = field(default_factory=dict)

    @property
    def recipes_dir(self) -> str:
        return os.path.join('configs', self.name)

    @property
    def length_field(self) -> str:
        """The config field that sets a run's length: ``epochs``, or ``max_iters`` for a run counted in steps."""
        return 'epochs' if self.run_length == 'epochs' else 'max_iters'


TASKS: Dict[str, Task] = {t.name: t for t in (
    Task('cls', 'image classification', 'stepsnet.config.classification:ClassificationConfig',
         'stepsnet.config.classification:load_config', 'stepsnet.tasks.classification:train_classification',
         'stepsnet.tasks.classification:validate_classification', 'stepsnet-cls', 'train-cls', 'validate',
         'ImageNet-1K', 8, 'stepsnet.data.layouts:write_imagenet', 'epochs', 'images',
         cli='stepsnet.cli.cls',
         compare='stepsnet.compare.task_cls:ADAPTER', dataset_size=(1_281_167, 50_000),
         cpu_batch=dict(batch_size=2, eval_batch_size=2, workers=0), tiny_inputs=dict(img_size=64)),
    Task('det', 'object detection', 'stepsnet.config.detection:DetectionConfig',
         'stepsnet.config.detection:load_config', 'stepsnet.tasks.detection:train_detection',
         'stepsnet.tasks.detection:evaluate_detection', 'stepsnet-det', 'train-det', 'eval-det', 'COCO 2017', 8,
         'stepsnet.data.layouts:write_coco', 'epochs', 'images', dataset_size=(118_287, 5_000),
         cli='stepsnet.cli.dense',
         cpu_batch=dict(batch_size=1, eval_batch_size=1, workers=0), tiny_inputs=dict(min_size=128, max_size=160)),
    Task('seg', 'semantic segmentation', 'stepsnet.config.segmentation:SegmentationConfig',
         'stepsnet.config.segmentation:load_config', 'stepsnet.tasks.segmentation:train_segmentation',
         'stepsnet.tasks.segmentation:evaluate_segmentation', 'stepsnet-seg', 'train-seg', 'eval-seg', 'ADE20K', 8,
         'stepsnet.data.layouts:write_ade20k', 'steps', 'images', dataset_size=(20_210, 2_000),
         cli='stepsnet.cli.dense',
         cpu_batch=dict(batch_size=2, workers=0),
         tiny_inputs=dict(crop_size=[64, 64], scale=[128, 64], test_scale=[128, 64])),
    Task('lm', 'language modelling', 'stepsnet.config.lm:LMConfig', 'stepsnet.config.lm:load_config',
         'stepsnet.tasks.lm:train_lm', 'stepsnet.tasks.lm:evaluate_lm_checkpoint', 'stepsnet-lm', 'train-lm', 'eval-lm',
         'WikiText-103', 1, 'stepsnet.data.layouts:write_wikitext103_tokens', 'steps', 'tokens',
         cli='stepsnet.cli.lm',
         compare='stepsnet.compare.task_lm:ADAPTER', cpu_batch=dict(batch_size=1, grad_accum=1),
         tiny_inputs=dict(block_size=64)),
)}
TASK_NAMES: Tuple[str, ...] = tuple(TASKS)
DEFAULT_TASK = 'cls'  # a recipe that names no task, or no recipe at all

# the recipes of configs/ that are not paper experiments: quick CPU recipes and the synthetic dense ones
LOCAL_RECIPES = ('digits_cpu.yaml', 'depth_digits.yaml', 'mnist1d.yaml', 'mnist1d_main.yaml', 'synthetic.yaml',
                 'cpu.yaml')


def task_of_kind(kind: str) -> Optional[str]:
    """The task whose checkpoints carry the format tag ``kind`` (``stepsnet-lm`` -> ``lm``); None for another."""
    return next((t.name for t in TASKS.values() if t.kind == kind), None)


def task_of_command(command: str) -> Optional[str]:
    """The task of a task's own training or evaluation command (``train-det`` -> ``det``); None for another."""
    return next((t.name for t in TASKS.values() if command in (t.train_command, t.eval_command)), None)


def paper_recipes(root: str = '.') -> List[str]:
    """The paper's recipes under ``root``/configs (every recipe of a task's folder but :data:`LOCAL_RECIPES`), as
    paths relative to ``root``, task by task in the order of :data:`TASKS`."""
    out = []
    for task in TASKS.values():
        folder = os.path.join(root, task.recipes_dir)
        out += [os.path.join(task.recipes_dir, n) for n in sorted(os.listdir(folder))
                if n.endswith('.yaml') and n not in LOCAL_RECIPES]
    return out


def resolve(target: str) -> Any:
    """The object a ``'module:name'`` string names (imports the module)."""
    module, _, name = target.partition(':')
    if not module or not name:
        raise ValueError(f'{target!r} is not a "module:name" string')
    return getattr(importlib.import_module(module), name)


def dynamic_imports() -> List[str]:
    """The ``'module:name'`` strings of the task table, which the package resolves at run time (the import linter
    cannot see them; a test resolves each, with the command modules of ``stepsnet.cli.COMMANDS``, which include the
    tasks' ``cli`` modules)."""
    return [getattr(t, f) for t in TASKS.values() for f in ('config', 'load_config', 'train', 'evaluate',
                                                            'write_layout', 'compare') if getattr(t, f)]
