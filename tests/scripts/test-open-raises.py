# open fails for the export named "bad"; the default export works.
import nbdkit

API_VERSION = 2


def open(readonly):
    if nbdkit.export_name() == "bad":
        raise RuntimeError("open refused export bad")
    return 1


def get_size(h):
    return 512


def pread(h, buf, offset, flags):
    buf[:] = b"x" * len(buf)
