# A read at offset 0 asks nbdkit to shut down (nbdkit.shutdown()).
import nbdkit

API_VERSION = 2


def open(readonly):
    return 1


def get_size(h):
    return 4096


def pread(h, buf, offset, flags):
    if offset == 0:
        nbdkit.shutdown()
    buf[:] = b"s" * len(buf)
