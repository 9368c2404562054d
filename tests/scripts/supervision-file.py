# A file-backed disk whose reads at the crash offset kill the worker (SIGSEGV), for the test
# that acknowledged writes survive a crash.
import ctypes
import os

import nbdkit

API_VERSION = 2
path = None
CRASH_OFFSET = 1024 * 1024 - 4096


def config(key, value):
    global path
    if key == "file":
        path = value


def open(readonly):
    return os.open(path, os.O_RDONLY if readonly else os.O_RDWR)


def close(fd):
    os.close(fd)


def get_size(fd):
    return os.fstat(fd).st_size


def pread(fd, buf, offset, flags):
    if offset == CRASH_OFFSET:
        ctypes.string_at(0)
    buf[:] = os.pread(fd, len(buf), offset)


def pwrite(fd, buf, offset, flags):
    os.pwrite(fd, buf, offset)
    if flags & nbdkit.FLAG_FUA:
        os.fdatasync(fd)


def flush(fd, flags):
    os.fdatasync(fd)
