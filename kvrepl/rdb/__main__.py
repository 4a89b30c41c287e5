"""``python -m kvrepl.rdb check|dump|stats FILE``: see :mod:`kvrepl.rdb.tool`."""

import sys

from kvrepl.rdb.tool import main

sys.exit(main())
