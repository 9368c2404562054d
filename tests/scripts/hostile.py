# A well-behaved script for test_hostile_worker.py: the worker relaying it is what lies. Every
# read returns the worker's pid, so a test can tell a replacement worker from the first one.
import os
import time

import nbdkit

SLOW_OFFSET = 512 * 1024  # a read here takes a while: it holds its lane (test_hygiene.py)

API_VERSION = 2


def thread_model():
    return nbdkit.THREAD_MODEL_PARALLEL


def list_exports(readonly, is_tls):
    return ["one", ("two", "the second")]


def default_export(readonly, is_tls):
    return "one"


def open(readonly):
    return {}


def get_size(h):
    return 1024 * 1024


def pread(h, buf, offset, flags):
    if offset == SLOW_OFFSET:
        time.sleep(0.3)
    text = ("pid=%d" % os.getpid()).encode()
    buf[:] = text[:len(buf)].ljust(len(buf), b"\0")


def can_extents(h):
    return True


def extents(h, count, offset, flags):
    return [(0, 1024 * 1024, 0)]
