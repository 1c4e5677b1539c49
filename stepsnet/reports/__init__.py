"""The statistics of the project's sweeps, each held once, for every program that reports them.

A sweep is reported in more than one place: its own report (written by the script that ran it) and the result
tables of the docs (``scripts/render_results.py``). Each module here computes a sweep's tests from its protocol and
per-run results, so that those places show the same tests, adjusted the same way, and cannot drift apart.

* :mod:`stepsnet.reports.lm_sweep`: the language-model sweep (``benchmarks/lm_sweep.yaml``) and the Llama pair
  (``benchmarks/llama_compare.yaml``, same format).
* :mod:`stepsnet.reports.lm_sweep_report`: that sweep's own report (``sweep.md``, ``sweep.csv``, ``sweep.json``,
  ``sweep.png``) from its per-run rows, the tests from :mod:`stepsnet.reports.lm_sweep`.

The modules import :mod:`stepsnet.stats` and :mod:`stepsnet.utils` only, and importing them loads no torch: a report
is rendered from stored numbers, without the models that produced them. Writing a report's files goes through the
atomic writers of :mod:`stepsnet.utils.checkpoint`, which load torch only to save or load a checkpoint.
"""
