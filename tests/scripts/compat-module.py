# The nbdkit module's per-connection functions, recorded in every callback that has a
# connection (preconnect, list_exports, default_export, open, pread), and set_error: a pwrite
# at 4096 * N fails with the errno named by ERRNOS[N].
import errno
import json
import time

import nbdkit

API_VERSION = 2

ERRNOS = ["ENOSPC", "EPERM", "EROFS", "EDQUOT", "EFBIG", "ENOMEM", "ESHUTDOWN", "EOPNOTSUPP",
          "ENOTSUP", "EOVERFLOW", "EINVAL", "ENOENT", "EACCES", "EIO", "EAGAIN", "EBADF",
          "ENOTCONN", "EFAULT"]
seen = {}


def probe(where):
    info = {}
    for name in ("is_tls", "peer_name", "peer_pid", "peer_uid", "peer_gid", "export_name"):
        try:
            info[name] = getattr(nbdkit, name)()
        except Exception as e:
            info[name] = "raised " + type(e).__name__
    seen[where] = info


def preconnect(readonly):
    probe("preconnect")


def list_exports(readonly, is_tls):
    probe("list_exports")
    return ["", "other"]


def default_export(readonly, is_tls):
    probe("default_export")
    return ""


def open(readonly):
    probe("open")
    return 1


def get_size(h):
    return 1024 * 1024


def pread(h, buf, offset, flags):
    if offset == 4096:
        start = time.monotonic()
        r = nbdkit.nanosleep(0, 300 * 1000 * 1000)
        seen["nanosleep"] = [r, time.monotonic() - start]
        r = nbdkit.nanosleep(1, 0)
        seen["nanosleep1"] = [r, time.monotonic() - start]
    if offset == 8192:
        seen["disconnect"] = nbdkit.disconnect(False)
    probe("pread")
    report = json.dumps(seen).encode().ljust(len(buf), b"\0")
    buf[:] = report[:len(buf)]


def pwrite(h, buf, offset, flags):
    index = offset // 4096
    if index < len(ERRNOS):
        nbdkit.set_error(getattr(errno, ERRNOS[index]))
        raise OSError("failing with " + ERRNOS[index])
    if index == 100:
        nbdkit.set_error(errno.ENOSPC)    # set, but no exception: the request succeeds
    if index == 101:
        raise RuntimeError("plain exception")
