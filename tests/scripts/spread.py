# A file-backed disk for spread=on: its state lives in a file, so every worker's handle sees
# what another wrote once it has flushed, as can_multi_conn promises. Every read reports the
# worker that served it: bytes 0-15 of each 512-byte sector read are "pid=PID;" padded with
# spaces, the rest is the file's data. Callbacks are journalled to "<file>.journal" as
# "PID EVENT" lines (open, flush, close). Knobs: multi_conn=0 makes can_multi_conn False;
# disagree=1 makes every worker but the first to open answer get_size with twice the size;
# slow=SECONDS makes every read take that long (so that requests overlap); flush_fails=1 makes
# flush, open_fails=1 open, raise in every worker but the first to open.
import builtins
import os
import time

import nbdkit

API_VERSION = 2
path = None
multi_conn = True
disagree = False
flush_fails = False
open_fails = False
slow = 0.0
TAG = 16


def config(key, value):
    global path, multi_conn, disagree, slow, flush_fails, open_fails
    if key == "file":
        path = value
    elif key == "multi_conn":
        multi_conn = value == "1"
    elif key == "disagree":
        disagree = value == "1"
    elif key == "open_fails":
        open_fails = value == "1"
    elif key == "flush_fails":
        flush_fails = value == "1"
    elif key == "slow":
        slow = float(value)
    else:
        raise RuntimeError("unknown parameter: %s" % key)


def thread_model():
    return nbdkit.THREAD_MODEL_PARALLEL


def journal(event):
    with builtins.open(path + ".journal", "a") as f:
        f.write("%d %s\n" % (os.getpid(), event))


def open(readonly):
    journal("open")
    owner = path + ".owner"
    try:
        fd = os.open(owner, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
    except FileExistsError:
        if open_fails and not first_to_open():
            raise RuntimeError("open fails here")
    return os.open(path, os.O_RDONLY if readonly else os.O_RDWR)


def close(h):
    journal("close")
    os.close(h)


def first_to_open():
    with builtins.open(path + ".owner") as f:
        return int(f.read()) == os.getpid()


def get_size(h):
    size = os.fstat(h).st_size
    if disagree and not first_to_open():
        return size * 2
    return size


def can_multi_conn(h):
    return multi_conn


def pread(h, buf, offset, flags):
    if slow:
        time.sleep(slow)
    buf[:] = os.pread(h, len(buf), offset)
    tag = ("pid=%d;" % os.getpid()).ljust(TAG).encode()
    for sector in range(0, len(buf), 512):
        buf[sector:sector + TAG] = tag


def pwrite(h, buf, offset, flags):
    os.pwrite(h, buf, offset)


def flush(h, flags):
    if flush_fails and not first_to_open():
        raise RuntimeError("flush fails here")
    os.fsync(h)
    journal("flush")
