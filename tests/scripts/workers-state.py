# Per-worker state made visible: every read returns this worker's pid, the config keys it got,
# and a counter of writes it has seen. Reads at 1 MiB spin the CPU (pure Python, GIL held).
import os

import nbdkit

API_VERSION = 2
keys = []
writes = 0
SPIN_OFFSET = 1024 * 1024


def config(key, value):
    keys.append("%s=%s" % (key, value))


def thread_model():
    return nbdkit.THREAD_MODEL_PARALLEL


def open(readonly):
    return {}


def get_size(h):
    return 2 * 1024 * 1024


def pread(h, buf, offset, flags):
    if offset == SPIN_OFFSET:
        total = 0
        for i in range(3_000_000):
            total += i * i
    text = "%d;%s;%d" % (os.getpid(), ",".join(keys), writes)
    buf[:] = text.encode().ljust(len(buf), b"\0")[:len(buf)]


def pwrite(h, buf, offset, flags):
    global writes
    writes += 1
