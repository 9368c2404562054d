# API 1 pread returning odd things, and get_size answers, chosen by offset / export name, so
# that clients can compare what nbdkit's python plugin and pyworker make of them.
import nbdkit


def open(readonly):
    return nbdkit.export_name()


def get_size(h):
    if h == "float":
        return 4096.0
    if h == "str":
        return "4096"
    if h == "negative":
        return -1
    if h == "raises":
        raise ValueError("no size today")
    return 1024 * 1024


def pread(h, count, offset):
    kind = offset // 4096
    if kind == 0:
        return b"b" * count
    if kind == 1:
        return bytearray(b"a" * count)
    if kind == 2:
        return memoryview(b"m" * count)
    if kind == 3:
        return None
    if kind == 4:
        return "s" * count
    if kind == 5:
        return count
    if kind == 6:
        return [1] * count
    return bytes(count)
