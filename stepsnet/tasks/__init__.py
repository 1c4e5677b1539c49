"""Tasks as library functions (training, evaluation, comparisons), one module per task.

``COMPARE_TASKS`` maps each ``stepsnet compare --task`` name to the module that implements it. Such a module
provides ``compare_add_arguments(parser)`` (its own options, added to the ``compare`` parser in an argument
group) and ``compare_from_args(args) -> dict``. Adding a task to ``compare`` is one line here.
"""
from typing import Dict

COMPARE_TASKS: Dict[str, str] = {
    'lm': 'stepsnet.tasks.lm',
    'cls': 'stepsnet.tasks.classification',
}

__all__ = ['COMPARE_TASKS']
