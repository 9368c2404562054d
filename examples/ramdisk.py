# A RAM disk: one bytearray shared by every connection.
#
#   nbdkit pyworker script=examples/ramdisk.py size=64M
#
# Runs unchanged under nbdkit's own python plugin:
#
#   nbdkit python script=examples/ramdisk.py size=64M

import threading

import nbdkit

API_VERSION = 2

size = 64 * 1024 * 1024
disk = None
lock = threading.Lock()  # guards `disk` against concurrent requests (PARALLEL thread model)


def config(key, value):
    global size
    if key == "size":
        size = nbdkit.parse_size(value)
    else:
        raise RuntimeError("unknown parameter: %s" % key)


def config_complete():
    global disk
    disk = bytearray(size)


def thread_model():
    return nbdkit.THREAD_MODEL_PARALLEL


def open(readonly):
    return 1


def get_size(h):
    return len(disk)


def can_multi_conn(h):
    return True  # every connection sees the same bytes


def pread(h, buf, offset, flags):
    end = offset + len(buf)
    with lock:
        buf[:] = disk[offset:end]


def pwrite(h, buf, offset, flags):
    end = offset + len(buf)
    with lock:
        disk[offset:end] = buf


def flush(h, flags):
    pass  # nothing to make durable


def trim(h, count, offset, flags):
    zero(h, count, offset, flags)


def zero(h, count, offset, flags):
    with lock:
        disk[offset:offset + count] = bytes(count)
