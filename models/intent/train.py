"""Training entry point for the intent model: `python models/intent/train.py [--seed 7] [--data-dir DIR]`.

Both models are trained together (the fairness check needs both), so this is the same as
`dsp models train`; the training code lives in `dsp/offline/training/intent.py` (data, features, params)
with export, calibration and reports in `dsp/offline/training/`.
"""

from __future__ import annotations

import sys

from dsp.cli import main

if __name__ == "__main__":
    sys.exit(main(["models", "train", *sys.argv[1:]]))
