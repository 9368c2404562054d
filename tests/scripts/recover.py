# A file-backed disk for recover=reopen: its state lives outside the interpreter, as the
# scripts recover=reopen is for. Knobs a test turns from outside, through files next to the
# disk: "<file>.size" overrides get_size, "<file>.refuse-open" makes open() raise,
# "<file>.single-conn" makes can_multi_conn() False. The last
# sector reads back what the connection was opened with and by whom, and which worker
# answered this read: "export=NAME;readonly=R;tls=T;pid=PID;peer_pid=P;peer_uid=U;
# peer_gid=G;served=PID" (pid: the worker that opened the handle; peer_*: what the nbdkit
# module said in open, "-" where it raised, as for a TCP client; served: the worker that
# answered the read). Reads at CRASH_OFFSET kill the worker every time,
# reads at SLOW_OFFSET take 30 s, and every read waits while "<file>.hold" exists (having
# added its offset to "<file>.held").
import builtins
import ctypes
import os
import time

import nbdkit

API_VERSION = 2
path = None
CRASH_OFFSET = 1024 * 1024
SLOW_OFFSET = 2 * 1024 * 1024
INFO_SIZE = 512


def config(key, value):
    global path
    if key == "file":
        path = value


def thread_model():
    return nbdkit.THREAD_MODEL_PARALLEL


def peer(name):
    try:
        return str(getattr(nbdkit, name)())
    except ValueError:  # not a Unix-socket client
        return "-"


def open(readonly):
    if os.path.exists(path + ".refuse-open"):
        raise RuntimeError("open refused by the test")
    return {"fd": os.open(path, os.O_RDONLY if readonly else os.O_RDWR),
            "info": "export=%s;readonly=%s;tls=%s;pid=%d;peer_pid=%s;peer_uid=%s;peer_gid=%s" % (
                nbdkit.export_name(), readonly, nbdkit.is_tls(), os.getpid(),
                peer("peer_pid"), peer("peer_uid"), peer("peer_gid"))}


def close(h):
    os.close(h["fd"])


def get_size(h):
    if os.path.exists(path + ".size"):
        with builtins.open(path + ".size") as f:
            return int(f.read())
    return os.fstat(h["fd"]).st_size


def can_multi_conn(h):
    return not os.path.exists(path + ".single-conn")


def pread(h, buf, offset, flags):
    if offset == CRASH_OFFSET:
        ctypes.string_at(0)
    if offset == SLOW_OFFSET:
        time.sleep(30)
    if os.path.exists(path + ".hold"):
        with builtins.open(path + ".held", "a") as f:
            f.write("%d\n" % offset)
    while os.path.exists(path + ".hold"):
        time.sleep(0.01)
    size = os.fstat(h["fd"]).st_size
    if offset == size - INFO_SIZE:
        text = "%s;served=%d" % (h["info"], os.getpid())
        buf[:] = text.encode().ljust(len(buf), b"\0")
        return
    buf[:] = os.pread(h["fd"], len(buf), offset)


def pwrite(h, buf, offset, flags):
    os.pwrite(h["fd"], buf, offset)
    if flags & nbdkit.FLAG_FUA:
        os.fdatasync(h["fd"])


def flush(h, flags):
    os.fdatasync(h["fd"])
