"""Residual against Steps, for every task: seeds x arms (x points), paired statistics, one report.

A comparison is a list of *points* (one setting, e.g. a depth), each with *arms* (``baseline``, ``steps``,
sometimes a ``control``), trained with the same recipe, data and seeds; only the model differs. Every run goes
into ``OUT/<point>/<arm>/seed<k>`` as an ordinary training run of its task, with ``resume='auto'``: a comparison
that is stopped and started again continues its unfinished runs and skips the finished ones. A run's results are
its run folder's ``results.json``: the engine's (:meth:`stepsnet.engine.RunFolder.results`), to which the harness
adds what the engine does not measure under ``comparison`` (:func:`read_result` reads the two as one). Results,
in ``OUT``:

* ``results.json``: per point and arm the model, its parameters, FLOPs, blocks and layers, the metric per seed
  (``per_seed``), its mean and standard deviation, the training time per seed and the validation curves; per point
  the paired differences to the baseline (same seed: same initialisation seed, same batches), each with its
  paired t-test (:class:`stepsnet.stats.PairedTest` fields: ``mean``, ``std``, ``ci_low`` / ``ci_high``, ``n``,
  ``t``, ``p``, ``p_adj`` (Holm across every difference of the report), ``same_sign``), its ``outcome`` and
  ``verdict`` and what the seeds can settle (``detectable``); ``trend``: the change of each gap with depth, tested
  the same way; ``statistics``: how; ``machines`` (every distinct machine the runs recorded) and
  ``runs_without_machine``; ``train_time_s`` (the runs' measured training time, summed), ``wall_time_s`` (this
  invocation), ``trained`` / ``reused`` (runs trained now / finished before);
* ``report.md``: the table, every paired test and its verdict, what the seeds can settle, and the machine;
* ``curves.png`` (validation metric against data seen, every run) and, for comparisons over depth,
  ``depth.png`` (the paper's Fig. 1 axes: metric against layers, markers sized by FLOPs).

Each task enters through a :class:`TaskAdapter` (runner, metric and direction, curve axis, recipe, config loader,
model check), defined in the task's own module (:mod:`~stepsnet.compare.task_cls`,
:mod:`~stepsnet.compare.task_lm`) and named by its row of the task table; :data:`ADAPTERS` collects them.
:func:`train_runs` (resumable runs, side by side, with logs) also runs the LM sweep (:mod:`stepsnet.compare.lm_sweep`,
imported on its own; its command line is ``benchmarks/lm_sweep.py``).
:func:`render_report` writes a report again from its ``results.json`` alone.

The package is split by job: :mod:`~stepsnet.compare.harness` (what a comparison is, training runs and reading
them back), :mod:`~stepsnet.compare.adapter` and the ``task_*`` modules (how each task enters),
:mod:`~stepsnet.compare.run` (running a comparison: train, collect, judge, report), :mod:`~stepsnet.compare.report`
(the tests' verdicts, the markdown and the plots), :mod:`~stepsnet.compare.builtin` (the comparisons of
``stepsnet compare``) and :mod:`~stepsnet.compare.protocols` (pre-registered comparisons and
power plans). Everything public is importable from ``stepsnet.compare``, except the LM sweep
(:mod:`stepsnet.compare.lm_sweep`) and the result tables of the docs, rendered from the committed result files by the
subpackage :mod:`stepsnet.compare.results_docs`, each imported on its own (``benchmarks/lm_sweep.py``,
``scripts/render_results.py``).

Four comparisons are built in (``stepsnet compare TASK``): :func:`mnist1d_comparison` (the main job: 1-D ResNets
with the layouts of ResNet-18 and ResNet-34 against their Steps twins on MNIST-1D), :func:`depth_comparison` (the
paper's Fig. 1 in miniature on the embedded digits: DeiT-like trunks, residual against the Steps twin of equal
parameters and FLOPs at a shallow and a deep setting), :func:`lm_comparison` and :func:`cls_comparison`.
"""
from stepsnet.compare.builtin import (
    COMPARISONS,
    DEPTH_RECIPE,
    MNIST1D_DEPTHS,
    MNIST1D_RECIPE,
    PLAIN_TWIN_KWARGS,
    cls_comparison,
    default_config_path,
    depth_comparison,
    lm_comparison,
    mnist1d_comparison,
)
from stepsnet.compare.harness import (
    ADAPTERS,
    EARLIER_RESULT,
    SECTION,
    Arm,
    Comparison,
    Point,
    RunSpec,
    TaskAdapter,
    add_to_results,
    read_result,
    spread,
    train_runs,
)
from stepsnet.compare.protocols import plan_markdown, power_plan, protocol_comparison, run_protocol
from stepsnet.compare.report import DECIDED_BY, VERDICT_HEAD, judge, render_report, report_markdown, write_report
from stepsnet.compare.run import dry_run_comparison, run_comparison

__all__ = ['Arm', 'Point', 'Comparison', 'TaskAdapter', 'ADAPTERS', 'SECTION', 'EARLIER_RESULT', 'RunSpec',
           'train_runs', 'read_result', 'add_to_results', 'spread', 'run_comparison', 'dry_run_comparison', 'judge',
           'DECIDED_BY', 'VERDICT_HEAD', 'write_report', 'render_report', 'report_markdown', 'DEPTH_RECIPE',
           'PLAIN_TWIN_KWARGS', 'MNIST1D_RECIPE', 'MNIST1D_DEPTHS', 'mnist1d_comparison',
           'depth_comparison', 'lm_comparison', 'cls_comparison', 'COMPARISONS',
           'default_config_path', 'protocol_comparison', 'run_protocol', 'power_plan', 'plan_markdown']
