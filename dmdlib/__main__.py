"""``python -m dmdlib COMMAND ...``: the command line (:mod:`dmdlib.cli`)."""
import sys

from .cli import main

sys.exit(main())
