"""A fork bomb: every process forks as fast as it can. The pids limit stops it."""

import os
import time

original = os.getpid()
reported = False
while True:
    try:
        os.fork()
    except OSError as error:
        if os.getpid() == original and not reported:
            print(f"fork refused: {error.strerror}", flush=True)
            reported = True
        time.sleep(0.1)
