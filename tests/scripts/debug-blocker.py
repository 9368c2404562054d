# For tests/test_debugging.py: a read at offset 0 blocks inside waiting_for_the_debugger()
# until the file release= exists (at most 60 s); it creates marker= when it gets there.
# Every other read is answered at once, concurrently (PARALLEL), so that a second connection
# is served while the first one is blocked.

import builtins
import os
import time

import nbdkit

API_VERSION = 2

marker = None
release = None


def config(key, value):
    global marker, release
    if key == "marker":
        marker = value
    elif key == "release":
        release = value
    else:
        raise RuntimeError("unknown key %s" % key)


def thread_model():
    return nbdkit.THREAD_MODEL_PARALLEL


def open(readonly):
    return {}


def get_size(h):
    return 1024 * 1024


def waiting_for_the_debugger(seconds):
    with builtins.open(marker, "w"):
        pass
    polls_left = seconds * 50
    while polls_left > 0 and not os.path.exists(release):
        time.sleep(0.02)
        polls_left -= 1


def pread(h, buf, offset, flags):
    if offset == 0:
        waiting_for_the_debugger(60)
    buf[:] = bytes([offset // 512 % 251]) * len(buf)
