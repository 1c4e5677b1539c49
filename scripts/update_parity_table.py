"""Regenerate the parity table of docs/models.md (between the models-table markers) from `stepsnet models`.

    python scripts/update_parity_table.py [docs/models.md]
"""
import sys

from stepsnet.analysis.complexity import complexity_table, format_table
from stepsnet.utils.docblocks import markers, write_block

BEGIN, END = markers('models-table')


def main() -> int:
    write_block(sys.argv[1] if len(sys.argv) > 1 else 'docs/models.md', format_table(complexity_table(), 'md'),
                BEGIN, END)
    return 0


if __name__ == '__main__':
    sys.exit(main())
