# print()s in every phase. Under -s, stdout is the NBD connection: none of this may reach it.
# The disk holds "printing-ok" repeated.
import sys

API_VERSION = 2

print("printing at load")
word = b"printing-ok"


def config(key, value):
    global word
    print("printing in config", key, value)
    if key == "word":
        word = value.encode()


def config_complete():
    print("printing in config_complete")
    sys.stdout.flush()


def open(readonly):
    print("printing in open")
    return 1


def get_size(h):
    print("printing in get_size")
    return 64 * 1024


def pread(h, buf, offset, flags):
    print("printing in pread", offset, len(buf))
    data = word * (len(buf) // len(word) + 2)
    start = offset % len(word)
    buf[:] = data[start:start + len(buf)]
