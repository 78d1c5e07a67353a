"""``python -m dsp.cli``: the same as the ``dsp`` console script."""

import sys

from dsp.cli import main

sys.exit(main())
