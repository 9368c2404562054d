# Shows nbdkit.set_error(): which errno a failing request returns to the client.
#
#   nbdkit pyworker script=examples/errors.py size=1M bad=4096-8191 readonly=0-4095
#
# - reads touching the `bad` byte range fail with EIO (a "bad sector");
# - writes touching the `readonly` byte range fail with EPERM;
# - an exception without set_error() fails the request with EIO too.
# Everything else behaves like a zero-filled RAM disk.

import errno

import nbdkit

API_VERSION = 2

size = 1024 * 1024
bad = (0, 0)        # [start, end) byte ranges; empty by default
readonly = (0, 0)
disk = None


def parse_range(value):
    start, _, end = value.partition("-")
    return (nbdkit.parse_size(start), nbdkit.parse_size(end) + 1)


def config(key, value):
    global size, bad, readonly
    if key == "size":
        size = nbdkit.parse_size(value)
    elif key == "bad":
        bad = parse_range(value)
    elif key == "readonly":
        readonly = parse_range(value)
    else:
        raise RuntimeError("unknown parameter: %s" % key)


def config_complete():
    global disk
    disk = bytearray(size)


def open(readonly):
    return 1


def get_size(h):
    return len(disk)


def overlaps(offset, count, r):
    return offset < r[1] and r[0] < offset + count


def pread(h, buf, offset, flags):
    if overlaps(offset, len(buf), bad):
        nbdkit.set_error(errno.EIO)
        raise IOError("bad sector in [%d, %d)" % bad)
    buf[:] = disk[offset:offset + len(buf)]


def pwrite(h, buf, offset, flags):
    if overlaps(offset, len(buf), readonly):
        nbdkit.set_error(errno.EPERM)
        raise PermissionError("region [%d, %d) is read-only" % readonly)
    disk[offset:offset + len(buf)] = buf


def zero(h, count, offset, flags):
    if overlaps(offset, count, readonly):
        nbdkit.set_error(errno.EPERM)
        raise PermissionError("region [%d, %d) is read-only" % readonly)
    disk[offset:offset + count] = bytes(count)
