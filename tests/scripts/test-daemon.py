# State built before nbdkit forks (config/config_complete) must still serve after it.
# seed=N fills the 1 MiB disk with a pattern derived from N in config_complete.
API_VERSION = 2

seed = None
disk = None


def config(key, value):
    global seed
    if key == "seed":
        seed = int(value)
    else:
        raise RuntimeError("unknown parameter " + key)


def config_complete():
    global disk
    if seed is None:
        raise RuntimeError("seed= is required")
    block = bytes((seed + i * 7) % 251 for i in range(4096))
    disk = bytearray(block * 256)


def open(readonly):
    return 1


def get_size(h):
    return len(disk)


def pread(h, buf, offset, flags):
    buf[:] = disk[offset:offset + len(buf)]


def pwrite(h, buf, offset, flags):
    disk[offset:offset + len(buf)] = buf
