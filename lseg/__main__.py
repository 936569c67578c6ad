"""``python -m lseg``: the ``lseg`` command."""

import sys

from lseg.cli import main

sys.exit(main())
