# Return values nbdkit's python plugin treats in its own way: boolean callbacks accept only
# the exact True (1 and "yes" are false), block_size/extents/list_exports from lists, export
# descriptions with non-ASCII text. pyworker must give the same answers.
import nbdkit

API_VERSION = 2


def list_exports(readonly, is_tls):
    return ["plain", ("café", "descripción ✓")]


def open(readonly):
    return nbdkit.export_name()


def export_description(h):
    return "exportación %s ✓" % h


def get_size(h):
    return 3 * 1024 * 1024 + 512   # not a multiple of 1 MiB


def can_write(h):
    return 1          # not True: read-only


def can_flush(h):
    return "yes"      # not True: no flush


def is_rotational(h):
    return True


def can_trim(h):
    return False


def can_multi_conn(h):
    return True


def can_extents(h):
    return True


def pread(h, buf, offset, flags):
    buf[:] = bytes([offset % 251]) * len(buf)


def pwrite(h, buf, offset, flags):
    pass


def flush(h, flags):
    pass


def extents(h, count, offset, flags):
    # A list of lists, unaligned lengths, and more than asked for.
    return [[0, 1000, nbdkit.EXTENT_ZERO], [1000, 3 * 1024 * 1024 - 488, 0]]
