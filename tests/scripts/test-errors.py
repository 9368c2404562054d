# A 1 MiB RAM disk with regions that fail in known ways:
#   [4096, 8192)   pread raises RuntimeError (no set_error: EIO)
#   [8192, 12288)  pwrite fails with ENOSPC via nbdkit.set_error
#   [12288, 16384) pwrite fails with EPERM via nbdkit.set_error
#   [16384, 20480) zero sets EOPNOTSUPP: nbdkit falls back to writing zeroes
#   flush raises ValueError (EIO)
import errno

import nbdkit

API_VERSION = 2

disk = bytearray(1024 * 1024)


def open(readonly):
    return 1


def get_size(h):
    return len(disk)


def inside(offset, count, lo, hi):
    return offset < hi and lo < offset + count


def pread(h, buf, offset, flags):
    if inside(offset, len(buf), 4096, 8192):
        raise RuntimeError("pread exploded at offset %d" % offset)
    buf[:] = disk[offset:offset + len(buf)]


def pwrite(h, buf, offset, flags):
    if inside(offset, len(buf), 8192, 12288):
        nbdkit.set_error(errno.ENOSPC)
        raise OSError("disk full at offset %d" % offset)
    if inside(offset, len(buf), 12288, 16384):
        nbdkit.set_error(errno.EPERM)
        raise PermissionError("no writes at offset %d" % offset)
    disk[offset:offset + len(buf)] = buf


def zero(h, count, offset, flags):
    if inside(offset, count, 16384, 20480):
        nbdkit.set_error(errno.EOPNOTSUPP)
        raise NotImplementedError("no fast zero here")
    disk[offset:offset + count] = bytes(count)


def flush(h, flags):
    raise ValueError("flush went wrong")
