# The benchmark's RAM disk: as thin as a script can be, so that the benchmark measures how
# requests reach the script rather than the script itself. Same file under `nbdkit python`
# and under pyworker.
#
#   size=SIZE   disk size (nbdkit.parse_size), default 1G
#   fill=1      start with a non-zero pattern (pattern_block() repeated), so that reads copy
#               real pages rather than the kernel's zero page
#
# No lock: one slice copy runs under the GIL without releasing it, and a write never resizes
# the bytearray, so concurrent requests cannot corrupt it (overlapping concurrent writes are
# unordered under NBD anyway). That makes THREAD_MODEL_PARALLEL safe here.

import nbdkit

API_VERSION = 2

size = 1 << 30
fill = False
disk = None


def pattern_block():
    # 4 KiB that every 4 KiB block of a filled disk holds; the benchmark checks reads with it.
    return bytes((i * 7 + 1) & 0xFF for i in range(4096))


def config(key, value):
    global size, fill
    if key == "size":
        size = nbdkit.parse_size(value)
    elif key == "fill":
        fill = value not in ("0", "false", "no", "")
    else:
        raise RuntimeError("unknown parameter: %s" % key)


def config_complete():
    global disk
    if size % 4096:
        raise RuntimeError("size must be a multiple of 4096")
    disk = bytearray(pattern_block()) * (size // 4096) if fill else bytearray(size)


def thread_model():
    return nbdkit.THREAD_MODEL_PARALLEL


def open(readonly):
    return 1


def get_size(h):
    return len(disk)


def can_multi_conn(h):
    return True  # one disk, every connection sees the same bytes


def pread(h, buf, offset, flags):
    buf[:] = disk[offset:offset + len(buf)]


def pwrite(h, buf, offset, flags):
    disk[offset:offset + len(buf)] = buf


def flush(h, flags):
    pass
