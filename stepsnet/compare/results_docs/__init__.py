"""The result tables of docs/, rendered from the committed result files.

Every table is computed from a file under ``docs/figures/`` (a comparison's ``results.json``, a sweep's or an
analysis's CSV); none is typed by hand, and none has statistics of its own here: a comparison's tests are those of
:func:`stepsnet.compare.judge` (read from its ``results.json``, or computed by it from the stored per-seed values
where the file was written before the sign-flip test), the LM sweep's those of :mod:`stepsnet.reports.lm_sweep`
(which the sweep's own report uses too), and an analysis table's per-model differences one family of
:func:`stepsnet.stats.test_family`. Each table sits between ``<!-- results:NAME:begin -->`` and
``<!-- results:NAME:end -->`` in its document.

Every difference is shown with both tests, the paired t-test and the exact sign-flip test, each Holm-adjusted
across the comparisons of its report. In an exploratory report a verdict ("ahead", "behind") needs both adjusted p
below 0.05 (rule ``both`` of :data:`stepsnet.stats.RULES`), so that none rests on the normality of three numbers; a
pre-registered comparison is decided by the test its protocol names. Anything else is "not distinguishable" with
the number of seeds it had.

The functions take the repository root (the folder holding ``docs/``, ``benchmarks/`` and ``configs/``; an
installed package holds no result files), those of one comparison its ``results.json``.
``scripts/render_results.py`` is the command line::

    from stepsnet.compare.results_docs import stale_blocks, write_blocks

    stale_blocks('.')              # ['docs/results.md: summary', ...]: the blocks the files render differently now
    write_blocks('.', ['dry-runs'])  # rewrite one block (default: every block)

The modules, by job: :mod:`~.cells` (reading the files, formatting the cells), :mod:`~.comparisons` (a
comparison's table, the MNIST-1D pairs), :mod:`~.analyses` (Tables 6 and 7, Fig. 2, Fig. 6c/d at CPU scale),
:mod:`~.lm` (the LM sweep and the Llama pair), :mod:`~.dry_runs` (the paper recipes' dry runs), :mod:`~.summary`
(docs/results.md) and :mod:`~.blocks` (which block of which document each table is).
"""
from stepsnet.compare.results_docs.blocks import (
    BLOCKS,
    Block,
    check_names,
    markers,
    render_block,
    render_text,
    stale_blocks,
    write_blocks,
)
from stepsnet.compare.results_docs.comparisons import judged, render_comparison, render_mnist1d
from stepsnet.compare.results_docs.lm import llama_tests, render_llama_compare, render_lm_sweep, sweep_tests
from stepsnet.compare.results_docs.summary import render_summary

__all__ = ['BLOCKS', 'Block', 'check_names', 'markers', 'render_block', 'render_text', 'stale_blocks',
           'write_blocks', 'judged', 'render_comparison', 'render_mnist1d', 'sweep_tests', 'llama_tests',
           'render_lm_sweep', 'render_llama_compare', 'render_summary']
