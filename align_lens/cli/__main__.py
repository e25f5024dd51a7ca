"""`python -m align_lens.cli`: the same as the `align-lens` command."""

import sys

from align_lens.cli import main

sys.exit(main())
