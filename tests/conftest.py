import os
import signal
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
# one thread per worker when pytest-xdist runs several (they share the cores), else at most 2
torch.set_num_threads(
    1 if os.environ.get("PYTEST_XDIST_WORKER") else min(2, torch.get_num_threads())
)

# Ctrl-C as a user's shell delivers it, even when the suite was started in the background of a
# script (which starts with SIGINT ignored, and its subprocesses inherit that): the interrupt
# tests send SIGINT to this process and to `iteration-heads` subprocesses.
signal.signal(signal.SIGINT, signal.default_int_handler)
