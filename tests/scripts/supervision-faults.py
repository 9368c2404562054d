# A script that fails in the way its parameters ask, for the supervision tests. Reads at offset
# 0 always work; a read at `fault_offset` triggers `fault`. Every read returns the config keys
# it was given, in order, so a test can see that a replacement worker was configured the same.
import ctypes
import os
import signal
import sys
import time

import nbdkit

API_VERSION = 2
fault = None
keys = []
size = 1024 * 1024
FAULT_OFFSET = 65536


def config(key, value):
    global fault
    keys.append("%s=%s" % (key, value))
    if key == "fault":
        fault = value


def thread_model():
    return nbdkit.THREAD_MODEL_PARALLEL


def open(readonly):
    return {}


def get_size(h):
    return size


def fail_now():
    if fault == "segv":
        ctypes.string_at(0)
    elif fault == "abort":
        os.abort()
    elif fault == "exit":
        os._exit(3)
    elif fault == "sys-exit":
        sys.exit(4)
    elif fault == "hang":
        while True:
            pass
    elif fault == "sleep":
        time.sleep(10 ** 9)
    elif fault == "memory":
        hog = [bytearray(64 * 1024 * 1024) for _ in range(1024)]
        return len(hog)
    elif fault == "sigkill-self":
        os.kill(os.getpid(), signal.SIGKILL)


def pread(h, buf, offset, flags):
    if offset == FAULT_OFFSET:
        fail_now()
    text = (",".join(keys) + ";pid=%d" % os.getpid()).encode()
    buf[:] = text[:len(buf)].ljust(len(buf), b"\0")
