# Defaults when callbacks are absent: only open, get_size and pread, plus the data callbacks
# named in ops=a,b,... (pwrite, flush, trim, zero, cache, extents), and never a can_* callback,
# so that nbdkit's python plugin defaults decide every flag.
API_VERSION = 2

disk = bytearray(1024 * 1024)


def _pwrite(h, buf, offset, flags):
    disk[offset:offset + len(buf)] = buf


def _flush(h, flags):
    pass


def _trim(h, count, offset, flags):
    disk[offset:offset + count] = bytes(count)


def _zero(h, count, offset, flags):
    disk[offset:offset + count] = bytes(count)


def _cache(h, count, offset, flags):
    pass


def _extents(h, count, offset, flags):
    return [(0, len(disk), 0)]


def config(key, value):
    if key != "ops":
        raise RuntimeError("unknown parameter " + key)
    for op in filter(None, value.split(",")):
        globals()[op] = globals()["_" + op]


def open(readonly):
    return 1


def get_size(h):
    return len(disk)


def pread(h, buf, offset, flags):
    buf[:] = disk[offset:offset + len(buf)]
