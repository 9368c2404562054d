# A PARALLEL script whose pread sleeps (as a network backend waits): every request stays in
# flight for `delay=` seconds. `reserve=MiB` takes that much address space at configuration,
# to leave a worker under memory= too little room for all its threads.
import time

API_VERSION = 2
delay = 0.5
hog = None


def config(key, value):
    global delay, hog
    if key == "delay":
        delay = float(value)
    elif key == "reserve":
        hog = bytearray(int(value) << 20)
    else:
        raise RuntimeError("unknown key " + key)


def thread_model():
    return 3  # nbdkit.THREAD_MODEL_PARALLEL


def open(readonly):
    return 1


def get_size(h):
    return 1 << 30


def pread(h, buf, offset, flags):
    time.sleep(delay)
    buf[:] = offset.to_bytes(8, "little") * (len(buf) // 8)
