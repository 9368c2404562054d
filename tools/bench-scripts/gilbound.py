# A read-only disk whose every 4 KiB block costs pure-Python work (the GIL held throughout):
# the case where one interpreter is the bottleneck and several workers should scale.
#
#   size=SIZE   disk size, default 256M (multiple of 4096)
#   work=N      loop iterations per 4 KiB block, default 1000 (~50 µs of CPython 3.11)
#
# Block n holds block_value(n, work) as 4 little-endian bytes, repeated 1024 times. Nothing is
# stored: any number of interpreters give the same answers, so PARALLEL and multi-conn are safe.

import nbdkit

API_VERSION = 2

size = 256 << 20
work = 1000


def block_value(n, iterations):
    x = n
    for _ in range(iterations):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
    return x


def config(key, value):
    global size, work
    if key == "size":
        size = nbdkit.parse_size(value)
    elif key == "work":
        work = int(value)
    else:
        raise RuntimeError("unknown parameter: %s" % key)


def config_complete():
    if size % 4096:
        raise RuntimeError("size must be a multiple of 4096")


def thread_model():
    return nbdkit.THREAD_MODEL_PARALLEL


def open(readonly):
    return 1


def get_size(h):
    return size


def can_write(h):
    return False


def can_multi_conn(h):
    return True


def pread(h, buf, offset, flags):
    end = offset + len(buf)
    first = offset // 4096
    last = (end - 1) // 4096
    pos = 0
    for n in range(first, last + 1):
        block = block_value(n, work).to_bytes(4, "little") * 1024
        lo = max(offset, n * 4096) - n * 4096
        hi = min(end, (n + 1) * 4096) - n * 4096
        buf[pos:pos + hi - lo] = block[lo:hi]
        pos += hi - lo
