# Fixture of tests/worker-rpc-test.c++: an API 2 ramdisk whose offsets trigger behaviours.
import errno
import time

import nbdkit

API_VERSION = 2

disk = bytearray(1024 * 1024)
settings = {}


def config(key, value):
    if key == "fail":
        raise ValueError("config refused " + value)
    settings[key] = value


def thread_model():
    return nbdkit.THREAD_MODEL_PARALLEL


def open(readonly):
    if nbdkit.export_name() == "refuse":
        nbdkit.set_error(errno.EACCES)
        raise PermissionError("open refused")
    nbdkit.debug("open export=%s readonly=%s" % (nbdkit.export_name(), readonly))
    return {"export": nbdkit.export_name()}


slow_reads_done = 0


def close(h):
    nbdkit.debug("close %s after %d slow reads" % (h["export"], slow_reads_done))
    if h["export"] == "close-raises":
        raise RuntimeError("close failed")


def get_size(h):
    return len(disk)


def block_size(h):
    return (1, 4096, 1024 * 1024)


def export_description(h):
    return "the export " + h["export"]


def can_multi_conn(h):
    return 1  # not exactly True: false, as in-process


def is_rotational(h):
    return True


def fail_in_helper():
    raise RuntimeError("no space here")


def pread(h, buf, offset, flags):
    if offset == 4096:
        nbdkit.set_error(errno.ENOSPC)
        fail_in_helper()
    if offset == 8192:
        raise ValueError("plain failure")
    if offset == 12288:
        nbdkit.set_error(errno.EPERM)  # then returns normally: success
    if offset == 16384:
        global slow_reads_done
        time.sleep(1)
        slow_reads_done += 1
        nbdkit.debug("slow pread done")
    if offset == 20480:
        nbdkit.disconnect(True)
    if offset == 28672:
        # More than a lane reply carries (1 MiB): the second goes to the Host, and so does
        # the small third one, after it.
        nbdkit.debug("a" * (600 * 1024))
        nbdkit.debug("b" * (600 * 1024))
        nbdkit.debug("c")
    if offset == 24576:
        global kept
        kept = buf[0:16]  # would write into a finished reply later: refused
    buf[:] = disk[offset:offset + len(buf)]


def pwrite(h, buf, offset, flags):
    disk[offset:offset + len(buf)] = buf
    if flags & nbdkit.FLAG_FUA:
        nbdkit.debug("fua write")


def zero(h, count, offset, flags):
    if not flags & nbdkit.FLAG_MAY_TRIM:
        nbdkit.set_error(errno.EOPNOTSUPP)
        raise NotImplementedError("fall back please")
    disk[offset:offset + count] = bytearray(count)


def extents(h, count, offset, flags):
    if offset == 0:
        return [(0, 4096, 0), (4096, 4096, nbdkit.EXTENT_HOLE | nbdkit.EXTENT_ZERO)]
    return [(offset, count, "hole")]


def list_exports(readonly, is_tls):
    return ["a", ("b", "desc of b")]


def default_export(readonly, is_tls):
    return "a"


def dump_plugin():
    print("rpc_fixture=yes")


def cleanup():
    nbdkit.debug("cleanup")
