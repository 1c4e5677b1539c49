"""Regenerate the twin parity table in docs/llama.md (between its markers) from ``stepsnet.hf.parity_table``."""
import pathlib
import sys

from update_readme_table import write_table

import stepsnet.hf as hf


def main() -> int:
    path = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else 'docs/llama.md')
    write_table(path, hf.format_parity_table(hf.parity_table()), *hf.twins.TABLE_MARKERS)
    return 0


if __name__ == '__main__':
    sys.exit(main())
