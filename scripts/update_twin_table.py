"""Regenerate the Steps-twin parity table in docs/models.md (between the twin-table markers).

Counts every baseline of ``stepsnet.models.twins.TWIN_BASELINES`` and its twin on the meta device (about a quarter
of a minute on one core).
"""
import sys
from typing import Optional, Sequence

from stepsnet.analysis.complexity import MODEL_PAIRS, TwinRow, format_twin_table, twin_table
from stepsnet.utils.docblocks import markers, write_block

BEGIN, END = markers('twin-table')


def render(rows: Optional[Sequence[TwinRow]] = None) -> str:
    """The markdown table (of ``rows``, or of a fresh count of every baseline)."""
    return format_twin_table(twin_table() if rows is None else rows, paper=[steps for steps, _ in MODEL_PAIRS])


def main() -> int:
    write_block(sys.argv[1] if len(sys.argv) > 1 else 'docs/models.md', render(), BEGIN, END)
    return 0


if __name__ == '__main__':
    sys.exit(main())
