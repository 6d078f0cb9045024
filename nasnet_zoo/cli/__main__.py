"""``python -m nasnet_zoo.cli``: the ``nasnet-zoo`` command."""

import sys

from . import main

sys.exit(main())
