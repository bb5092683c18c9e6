"""``python -m irt_fast ...``: the same as the ``irt-fast`` command (:mod:`irt_fast.cli`)."""

from __future__ import annotations

import sys

from irt_fast.cli import main

if __name__ == "__main__":
    sys.exit(main())
