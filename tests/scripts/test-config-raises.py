# config accepts only size=; config_complete refuses size=13.
import nbdkit

API_VERSION = 2
size = 512


def config(key, value):
    global size
    if key != "size":
        raise RuntimeError("unknown parameter %s=%s" % (key, value))
    size = nbdkit.parse_size(value)


def config_complete():
    if size == 13:
        raise ValueError("size 13 is unlucky")


def open(readonly):
    return 1


def get_size(h):
    return size


def pread(h, buf, offset, flags):
    buf[:] = bytes(len(buf))
