# A script whose config() blocks, as one does when its backend does not answer: in every
# worker (block=always), or only in workers started after the first (block=replacements: the
# first worker leaves a marker file, later ones find it). The pid of each worker that blocks is
# appended to the marker file, so a test can tell which worker is stuck.
import builtins
import os
import time

import nbdkit

API_VERSION = 2
marker = None


def config(key, value):
    global marker
    if key == "marker":
        marker = value
    elif key == "block":
        first = not os.path.exists(marker)
        with builtins.open(marker, "a") as f:
            f.write("%d %s\n" % (os.getpid(), "first" if first else "later"))
        if value == "always" or (value == "replacements" and not first):
            time.sleep(3600)


def thread_model():
    return nbdkit.THREAD_MODEL_PARALLEL


def open(readonly):
    return {}


def get_size(h):
    return 1024 * 1024


def pread(h, buf, offset, flags):
    buf[:] = b"\1" * len(buf)
