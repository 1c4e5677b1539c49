"""``python -m stepsnet``: the ``stepsnet`` command."""
import sys

from stepsnet.cli import main

if __name__ == '__main__':
    sys.exit(main())
