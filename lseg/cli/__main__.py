"""``python -m lseg.cli`` (and ``torchrun -m lseg.cli``): the ``lseg`` command."""

import sys

from lseg.cli import main

sys.exit(main())
