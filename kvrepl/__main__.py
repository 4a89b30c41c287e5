import sys

from kvrepl.cli import main

sys.exit(main())
