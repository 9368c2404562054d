# Which thread runs what. In-process, nbdkit runs config ... after_fork on its main thread, so
# a script may set a Python signal handler there, and the threading module it imports first
# in a connection callback takes that connection's thread for the main one. The log= file
# records what the script sees; an atexit handler registered late proves that the
# interpreter was finalized at exit, not abandoned.
import atexit
import builtins
import signal
import sys

import nbdkit

API_VERSION = 2

logfile = None


def record(*what):
    with builtins.open(logfile, "a") as f:  # open() below is the callback
        f.write(" ".join(str(w) for w in what) + "\n")


def config(key, value):
    global logfile
    if key == "log":
        logfile = value


def config_complete():
    # Raises ValueError anywhere but on the main thread.
    signal.signal(signal.SIGWINCH, lambda signum, frame: None)
    record("config_complete set a signal handler")


def open(readonly):
    if "threading" not in sys.modules:
        import threading  # first imported here, on whatever thread runs open()
        atexit.register(record, "atexit", threading.main_thread().name)
    return 1


def get_size(h):
    return 4096


def pread(h, buf, offset, flags):
    buf[:] = bytes(len(buf))
