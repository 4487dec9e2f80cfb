"""``python -m ped.cli``: the ``ped`` command."""

import sys

from ped.cli import main

sys.exit(main())
