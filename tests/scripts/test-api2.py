# API version 2: flags reach the callbacks. 1 MiB RAM disk with native FUA; the last 4096 bytes
# report the call log as JSON instead.
import json

import nbdkit

API_VERSION = 2

size = 1024 * 1024
disk = bytearray(size)
log = []
LOG_AT = size - 4096


def open(readonly):
    return 1


def get_size(h):
    return size


def can_fua(h):
    return nbdkit.FUA_NATIVE


def can_fast_zero(h):
    return True


def pread(h, buf, offset, flags):
    if offset >= LOG_AT:
        text = json.dumps(log).encode().ljust(4096, b"\0")
        buf[:] = text[offset - LOG_AT:offset - LOG_AT + len(buf)]
        return
    log.append(["pread", len(buf), offset, flags, type(buf).__name__])
    buf[:] = disk[offset:offset + len(buf)]


def pwrite(h, buf, offset, flags):
    log.append(["pwrite", len(buf), offset, flags])
    disk[offset:offset + len(buf)] = buf


def flush(h, flags):
    log.append(["flush", flags])


def trim(h, count, offset, flags):
    log.append(["trim", count, offset, flags])
    disk[offset:offset + count] = bytes(count)


def zero(h, count, offset, flags):
    log.append(["zero", count, offset, flags])
    disk[offset:offset + count] = bytes(count)
