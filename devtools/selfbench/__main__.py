"""``python -m devtools.selfbench`` (what ``nox -s selfbench`` runs): see bench.py."""

import sys

from devtools.selfbench.bench import main

sys.exit(main())
