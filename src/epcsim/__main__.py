"""``python -m epcsim``: the ``epcsim`` command."""

import sys

from epcsim.cli import main

sys.exit(main())
