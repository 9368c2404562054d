# PARALLEL script for the cache and readahead filters: the disk's bytes are a function of the
# offset, and log=FILE records every pread and cache call the plugin receives.
import threading

import nbdkit

API_VERSION = 2

log = None
lock = threading.Lock()
SIZE = 8 * 1024 * 1024


def config(key, value):
    global log
    if key == "log":
        log = value
    else:
        raise RuntimeError("unknown parameter " + key)


def thread_model():
    return nbdkit.THREAD_MODEL_PARALLEL


def record(line):
    with lock:
        with open_log() as f:
            f.write(line + "\n")


def open_log():
    import builtins
    return builtins.open(log, "a")


def open(readonly):
    return 1


def get_size(h):
    return SIZE


def byte_at(offset):
    return (offset // 512 * 7 + 3) % 251


def pread(h, buf, offset, flags):
    record("pread %d %d" % (offset, len(buf)))
    for i in range(0, len(buf), 512):
        buf[i:i + 512] = bytes([byte_at(offset + i)]) * min(512, len(buf) - i)


def cache(h, count, offset, flags):
    record("cache %d %d" % (offset, count))
