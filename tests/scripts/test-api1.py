# API version 1 (no API_VERSION): pread returns a buffer, no flags arguments.
# 1 MiB RAM disk; the last 4096 bytes report the call log as JSON instead.
#   pread at 65536 returns a buffer one byte short (must fail);
#   pread at 131072 returns a buffer one byte too long (truncated).
import json

size = 1024 * 1024
disk = bytearray(size)
log = []
LOG_AT = size - 4096


def open(readonly):
    return 1


def get_size(h):
    return size


def pread(h, count, offset):
    if offset >= LOG_AT:
        text = json.dumps(log).encode().ljust(4096, b"\0")
        return text[offset - LOG_AT:offset - LOG_AT + count]
    if offset == 65536:
        return bytes(disk[offset:offset + count - 1])
    if offset == 131072:
        return bytes(disk[offset:offset + count]) + b"EXTRA"
    return bytes(disk[offset:offset + count])


def pwrite(h, buf, offset):
    log.append(["pwrite", len(buf), offset, type(buf).__name__])
    disk[offset:offset + len(buf)] = buf


def flush(h):
    log.append(["flush"])


def trim(h, count, offset):
    log.append(["trim", count, offset])
    disk[offset:offset + count] = bytes(count)


def zero(h, count, offset, may_trim):
    log.append(["zero", count, offset, may_trim])
    disk[offset:offset + count] = bytes(count)
