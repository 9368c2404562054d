# Defines (nearly) every callback with non-default answers, for comparing what clients see
# (nbdinfo --json, --list, --map) under nbdkit's python plugin and under pyworker.
import errno

import nbdkit

API_VERSION = 2

SIZE = 8 * 1024 * 1024
disks = {}


def thread_model():
    return nbdkit.THREAD_MODEL_SERIALIZE_REQUESTS


def list_exports(readonly, is_tls):
    return [("alpha", "the first export"), "beta", ("", "the default")]


def default_export(readonly, is_tls):
    return "alpha"


def open(readonly):
    name = nbdkit.export_name()
    if name not in ("alpha", "beta"):
        nbdkit.set_error(errno.ENOENT)
        raise RuntimeError("no such export: %r" % name)
    disks.setdefault(name, bytearray(SIZE if name == "alpha" else SIZE // 2))
    return {"name": name, "disk": disks[name]}


def export_description(h):
    return "export %s served by a script" % h["name"]


def get_size(h):
    return len(h["disk"])


def block_size(h):
    return (512, 4096, 1024 * 1024)


def is_rotational(h):
    return True


def can_multi_conn(h):
    return h["name"] == "alpha"


def can_write(h):
    return h["name"] == "alpha"


def can_flush(h):
    return True


def can_trim(h):
    return True


def can_zero(h):
    return True


def can_fast_zero(h):
    return False


def can_fua(h):
    return nbdkit.FUA_NATIVE


def can_cache(h):
    return nbdkit.CACHE_NATIVE


def can_extents(h):
    return True


def pread(h, buf, offset, flags):
    buf[:] = h["disk"][offset:offset + len(buf)]


def pwrite(h, buf, offset, flags):
    h["disk"][offset:offset + len(buf)] = buf


def flush(h, flags):
    pass


def trim(h, count, offset, flags):
    h["disk"][offset:offset + count] = bytes(count)


def zero(h, count, offset, flags):
    h["disk"][offset:offset + count] = bytes(count)


def cache(h, count, offset, flags):
    pass


def extents(h, count, offset, flags):
    # First MiB data, second MiB a hole of zeroes, the rest zero but allocated.
    out = []
    mib = 1024 * 1024
    for start, length, kind in ((0, mib, 0),
                                (mib, mib, nbdkit.EXTENT_HOLE | nbdkit.EXTENT_ZERO),
                                (2 * mib, len(h["disk"]) - 2 * mib, nbdkit.EXTENT_ZERO)):
        end = start + length
        if end > offset and start < offset + count:
            out.append((start, length, kind))
    return out
