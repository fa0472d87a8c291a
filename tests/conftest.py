"""The whole suite: pytest's workers already use every core, so a first compile inside a
test runs no side process (epcsim.compiling.start_side); tests of the side turn it on."""

from __future__ import annotations

import os

os.environ.setdefault("EPCSIM_SIDE_COMPILE", "0")
