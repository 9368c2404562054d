# Appends the name of every process-wide and per-connection callback nbdkit makes to the file
# given by log= (config keys included), so that the sequence can be compared between nbdkit's
# python plugin and pyworker. A 1 MiB RAM disk. It imports threading, as many scripts do, and
# registers an atexit handler: both run when the interpreter is finalized at unload.
import atexit
import builtins
import threading

import nbdkit

API_VERSION = 2

logfile = None
disk = bytearray(1024 * 1024)


def record(*what):
    if logfile is not None:
        with builtins.open(logfile, "a") as f:  # open() below is the callback
            f.write(" ".join(str(w) for w in what) + "\n")


def config(key, value):
    global logfile
    if key == "log":
        logfile = value
        atexit.register(record, "atexit")
    record("config", key)


def config_complete():
    record("config_complete")


def thread_model():
    return nbdkit.THREAD_MODEL_SERIALIZE_ALL_REQUESTS


def get_ready():
    record("get_ready")


def after_fork():
    record("after_fork")


def preconnect(readonly):
    record("preconnect", readonly)


def open(readonly):
    record("open", readonly, nbdkit.export_name())
    return {"n": 0}


def close(h):
    record("close", h["n"])


def cleanup():
    record("cleanup")


def get_size(h):
    return len(disk)


def pread(h, buf, offset, flags):
    h["n"] += 1
    buf[:] = disk[offset:offset + len(buf)]


def pwrite(h, buf, offset, flags):
    h["n"] += 1
    disk[offset:offset + len(buf)] = buf
