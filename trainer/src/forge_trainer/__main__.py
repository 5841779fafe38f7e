"""`python -m forge_trainer ...` is `forge-trainer ...`."""

import sys

from forge_trainer.cli import main

sys.exit(main())
