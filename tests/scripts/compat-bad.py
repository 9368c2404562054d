# Bad return values, one per export name (or per bad= key for the callbacks that run before a
# client names an export), so that one server shows each error and then keeps serving.
import nbdkit

API_VERSION = 2

bad = ""


def config(key, value):
    global bad
    if key == "bad":
        bad = value
    else:
        raise RuntimeError("unknown parameter " + key)


def thread_model():
    if bad == "thread_model_str":
        return "parallel"
    return nbdkit.THREAD_MODEL_PARALLEL


def dump_plugin():
    print("compat_bad=1")
    if bad == "dump_plugin_raises":
        raise RuntimeError("dump_plugin exploded 5e2a")


def list_exports(readonly, is_tls):
    if bad == "list_exports_int":
        return 42
    if bad == "list_exports_surrogate":
        return ["good", "bad\udc80name"]
    if bad == "description_surrogate":
        return [("good", "bad\ud800description")]
    return ["good"]


def default_export(readonly, is_tls):
    if bad == "default_export_surrogate":
        return "\ud800default"
    return "good"


def open(readonly):
    return nbdkit.export_name()


def get_size(h):
    if h == "get_size_str":
        return "4096"
    return 1024 * 1024


def block_size(h):
    if h == "block_size_list":
        return [512, 4096, 1024 * 1024]
    if h == "block_size_not_power_of_2":
        return (3, 4096, 1024 * 1024)
    if h == "block_size_too_big":
        return (512, 4096, 2 ** 32)
    if h == "block_size_two":
        return (512, 4096)
    return (1, 4096, 1024 * 1024)


def can_fua(h):
    if h == "can_fua_int":
        return 7
    if h == "can_fua_str":
        return "native"
    return nbdkit.FUA_NATIVE


def can_cache(h):
    if h == "can_cache_junk":
        return -1
    return nbdkit.CACHE_NONE


def can_extents(h):
    return True


def pread(h, buf, offset, flags):
    buf[:] = b"g" * len(buf)


def pwrite(h, buf, offset, flags):
    pass


def extents(h, count, offset, flags):
    if h == "extents_empty":
        return []
    if h == "extents_gap":
        return [(0, 4096, 0), (8192, 1024 * 1024 - 8192, 0)]
    if h == "extents_backwards":
        return [(4096, 4096, 0), (0, 4096, 0)]
    return [(0, 1024 * 1024, 0)]
