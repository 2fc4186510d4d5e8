"""``python -m training.eval``: evaluate served models on held-out dialogues (see :mod:`training.evaluate`).

How to run::

    python -m training.eval --models base=http://127.0.0.1:8000/v1@sweetiechat --data esconv:valid --max_turns 150
"""

from __future__ import annotations

import sys

from training.evaluate import cli

if __name__ == "__main__":
    sys.exit(cli())
