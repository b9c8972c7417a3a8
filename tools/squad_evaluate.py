"""Official SQuAD v1.1 / v2.0 metrics (see pybert.cli.squad_evaluate)."""

import sys

from pybert.cli.squad_evaluate import main

if __name__ == "__main__":
    sys.exit(main())
