# Raises while being loaded.
raise RuntimeError("load-time failure 4c1d")


def open(readonly):
    return 1


def get_size(h):
    return 512


def pread(h, count, offset):
    return bytes(count)
