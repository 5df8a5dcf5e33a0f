"""`python -m tools.archivectl ...`, as the `archivectl` script."""

import sys

from tools.archivectl.cli import main

sys.exit(main())
