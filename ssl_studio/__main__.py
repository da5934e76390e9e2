"""``python -m ssl_studio``: the CLI, so that ``torchrun --nproc_per_node N -m ssl_studio train ...`` works."""

import sys

from ssl_studio.cli import main

sys.exit(main())
