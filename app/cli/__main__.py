"""``python -m app.cli``: the ``tipbox`` command without its installed script."""

import sys

from app.cli import main

sys.exit(main())
