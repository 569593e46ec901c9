"""`python -m isvc_operator.storage`: the init container's entry point."""

import sys

from .cli import main

sys.exit(main())
