# An 8 GiB disk that stores nothing: zero and trim record their arguments (they may be close to
# 4 GiB, far more than one data message), pwrite checks and records what it got, pread returns
# a pattern. The call log is readable at offset 0 (4096 bytes of JSON).
import json

API_VERSION = 2

log = []


def open(readonly):
    return 1


def get_size(h):
    return 8 * 1024 * 1024 * 1024


def can_fast_zero(h):
    return True


def pread(h, buf, offset, flags):
    if offset == 0 and len(buf) == 4096:
        buf[:] = json.dumps(log).encode().ljust(4096, b"\0")
        return
    # byte i of the disk is (i // 4096) % 256
    out = bytearray()
    pos = offset
    end = offset + len(buf)
    while pos < end:
        block_end = min(end, (pos // 4096 + 1) * 4096)
        out += bytes([(pos // 4096) % 256]) * (block_end - pos)
        pos = block_end
    buf[:] = out


def pwrite(h, buf, offset, flags):
    view = memoryview(buf)
    ok = all(view[i] == (i * 31) % 256 for i in range(0, len(buf), 65537))
    log.append(["pwrite", len(buf), offset, ok])


def zero(h, count, offset, flags):
    log.append(["zero", count, offset, flags])


def trim(h, count, offset, flags):
    log.append(["trim", count, offset, flags])
