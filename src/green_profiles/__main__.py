"""``python -m green_profiles``: see :mod:`green_profiles.cli`."""

import sys

from green_profiles.cli import main

sys.exit(main())
