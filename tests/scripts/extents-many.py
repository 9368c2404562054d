# An honest script with a very fragmented disk: `extents=N` extents of 512 bytes, types
# alternating data and hole+zero, and extents() answering with all of them whatever the
# request (as a naive script does), from a generator.
import nbdkit

API_VERSION = 2
count = 0


def config(key, value):
    global count
    if key == "extents":
        count = int(value)
    else:
        raise RuntimeError("unknown key " + key)


def open(readonly):
    return 1


def get_size(h):
    return count * 512


def pread(h, buf, offset, flags):
    buf[:] = bytes(len(buf))


def can_extents(h):
    return True


def extents(h, length, offset, flags):
    hole = nbdkit.EXTENT_HOLE | nbdkit.EXTENT_ZERO
    return ((i * 512, 512, hole if i % 2 else 0) for i in range(count))
