# Fixture of fuzz/worker-requests-fuzz: an API 2 RAM disk defining every callback, quick and
# bounded whatever the request says (no sleeps, no allocation sized by a request), with offsets
# that make callbacks fail, so that both outcomes of each are reachable.
import errno

import nbdkit

API_VERSION = 2

disk = bytearray(1024 * 1024)
settings = {}


def check(offset, count):
    if offset + count > len(disk):
        nbdkit.set_error(errno.ENOSPC)
        raise ValueError("beyond the end")
    if offset == 4096:
        raise RuntimeError("offset 4096 always fails")


def config(key, value):
    if key == "fail":
        raise ValueError("config refused " + value)
    settings[key] = value


def config_complete():
    pass


def thread_model():
    return nbdkit.THREAD_MODEL_PARALLEL


def get_ready():
    pass


def preconnect(readonly):
    nbdkit.debug("preconnect from %r" % (nbdkit.peer_name(),))


def list_exports(readonly, is_tls):
    return ["a", ("b", "the export b"), "c\u00e9"]


def default_export(readonly, is_tls):
    return "a"


def open(readonly):
    name = nbdkit.export_name()
    nbdkit.debug("open %r readonly=%s tls=%s" % (name, readonly, nbdkit.is_tls()))
    if name == "refuse":
        raise PermissionError("refused")
    return {"export": name}


def close(h):
    if h["export"] == "close-raises":
        raise RuntimeError("close failed")


def get_size(h):
    return len(disk)


def block_size(h):
    return (1, 4096, 1024 * 1024)


def export_description(h):
    return "export " + h["export"]


def can_write(h):
    return True


def can_flush(h):
    return True


def is_rotational(h):
    return False


def can_trim(h):
    return True


def can_zero(h):
    return True


def can_fast_zero(h):
    return True


def can_fua(h):
    return nbdkit.FUA_NATIVE


def can_cache(h):
    return nbdkit.CACHE_NATIVE


def can_extents(h):
    return True


def can_multi_conn(h):
    return True


def pread(h, buf, offset, flags):
    check(offset, len(buf))
    if offset == 8192:
        nbdkit.disconnect(False)
    buf[:] = disk[offset:offset + len(buf)]


def pwrite(h, buf, offset, flags):
    check(offset, len(buf))
    disk[offset:offset + len(buf)] = buf


def flush(h, flags):
    pass


def trim(h, count, offset, flags):
    check(offset, count)


def zero(h, count, offset, flags):
    check(offset, count)
    if not flags & nbdkit.FLAG_MAY_TRIM:
        nbdkit.set_error(errno.EOPNOTSUPP)
        raise NotImplementedError("fall back")
    disk[offset:offset + count] = bytes(count)


def cache(h, count, offset, flags):
    check(offset, count)


def extents(h, count, offset, flags):
    if offset == 4096:
        return [(offset, count, "hole")]
    if offset == 8192:
        return []
    half = count // 2
    return [(offset, half, 0), (offset + half, count - half, nbdkit.EXTENT_HOLE)]


def dump_plugin():
    print("fixture=yes")


def cleanup():
    pass
