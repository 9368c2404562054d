# A disk backed by a file.
#
#   nbdkit pyworker script=examples/file.py file=disk.img
#
# Writes with FLAG_FUA are made durable before they are acknowledged; flush is fsync.

import errno
import os

import nbdkit

API_VERSION = 2

filename = None


def config(key, value):
    global filename
    if key == "file":
        filename = os.path.abspath(value)  # the daemon chdir()s to /
    else:
        raise RuntimeError("unknown parameter: %s" % key)


def config_complete():
    if filename is None:
        raise RuntimeError("file parameter is required")


def thread_model():
    return nbdkit.THREAD_MODEL_PARALLEL  # os.pread/os.pwrite carry their own offsets


def can_fua(h):
    return nbdkit.FUA_NATIVE


def open(readonly):
    flags = os.O_RDONLY if readonly else os.O_RDWR
    return {"fd": os.open(filename, flags)}


def close(h):
    os.close(h["fd"])


def get_size(h):
    return os.fstat(h["fd"]).st_size


def pread(h, buf, offset, flags):
    data = os.pread(h["fd"], len(buf), offset)
    if len(data) != len(buf):
        nbdkit.set_error(errno.EIO)
        raise IOError("short read at offset %d" % offset)
    buf[:] = data


def pwrite(h, buf, offset, flags):
    view = memoryview(buf)
    while view:
        n = os.pwrite(h["fd"], view, offset)
        view = view[n:]
        offset += n
    if flags & nbdkit.FLAG_FUA:
        os.fsync(h["fd"])


def flush(h, flags):
    os.fsync(h["fd"])
