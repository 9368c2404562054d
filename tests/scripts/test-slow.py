# Every pread sleeps `delay=` seconds (default 0.5). thread_model= picks the model by name, so
# that a test can see whether requests really overlap (PARALLEL) or queue (SERIALIZE_*).
import time

import nbdkit

API_VERSION = 2

delay = 0.5
model = nbdkit.THREAD_MODEL_PARALLEL


def config(key, value):
    global delay, model
    if key == "delay":
        delay = float(value)
    elif key == "model":
        model = getattr(nbdkit, "THREAD_MODEL_" + value.upper())
    else:
        raise RuntimeError("unknown parameter " + key)


def thread_model():
    return model


def open(readonly):
    return 1


def get_size(h):
    return 1024 * 1024


def pread(h, buf, offset, flags):
    time.sleep(delay)
    buf[:] = bytes([offset // 4096 % 256]) * len(buf)
