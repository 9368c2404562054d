# For test_flow_limits.py: a script that floods nbdkit from a thread of its own, started in
# after_fork, as fast as it can: FLOOD=debug calls nbdkit.debug() (1 KiB messages), FLOOD=lines
# prints 64 KiB lines, FLOOD=unterminated writes 64 KiB without a newline; FLOOD_BYTES in all.
# Reads return "done=N" once the flood is over (N messages), "busy" before.
import os
import sys
import threading

import nbdkit

API_VERSION = 2

MODE = os.environ["FLOOD"]
TOTAL = int(os.environ["FLOOD_BYTES"])
done = []


def flood():
    chunk = "x" * (1024 if MODE == "debug" else 65536)
    sent = 0
    count = 0
    while sent < TOTAL:
        if MODE == "debug":
            nbdkit.debug(chunk)
        elif MODE == "lines":
            print(chunk)
        else:
            sys.stdout.write(chunk)
            sys.stdout.flush()
        sent += len(chunk)
        count += 1
    done.append(count)


def thread_model():
    return nbdkit.THREAD_MODEL_PARALLEL


def after_fork():
    threading.Thread(target=flood, daemon=True).start()


def open(readonly):
    return {}


def get_size(h):
    return 1024 * 1024


def pread(h, buf, offset, flags):
    text = ("done=%d" % done[0]).encode() if done else b"busy"
    buf[:] = text[:len(buf)].ljust(len(buf), b"\0")
