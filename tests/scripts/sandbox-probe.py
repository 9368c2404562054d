# For tests/test_sandbox.py: a disk backed by file=, whose open() first tries what the export
# name says, so that each attempt is one connection and its PermissionError (or its success)
# shows in the log with the traceback:
#   shadow    read /etc/shadow              write   create outside=PATH
#   ptrace    PTRACE_ATTACH nbdkit          module  finit_module()
#   connect   TCP to 127.0.0.1:port=        status  log /proc/self/status
#   kill      signal 0 to nbdkit            exec    run /bin/echo
#   chmod     make /etc/shadow world-readable
# Any other name (the default "") opens the disk only.

import builtins
import ctypes
import errno
import os
import socket

import nbdkit

API_VERSION = 2

filename = None
outside = None
port = None

SYS_PTRACE = 101
SYS_FINIT_MODULE = 313
PTRACE_ATTACH = 16


def config(key, value):
    global filename, outside, port
    if key == "file":
        filename = os.path.abspath(value)
    elif key == "outside":
        outside = value
    elif key == "port":
        port = int(value)
    else:
        raise RuntimeError("unknown key %s" % key)


def thread_model():
    return nbdkit.THREAD_MODEL_PARALLEL


def raw_syscall(number, *args):
    """A system call the os module lacks; its errno as OSError (PermissionError for EPERM)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    result = libc.syscall(ctypes.c_long(number), *[ctypes.c_long(a) for a in args])
    if result < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return result


def try_shadow():
    with builtins.open("/etc/shadow") as f:
        f.read()


def try_write():
    with builtins.open(outside, "w") as f:
        f.write("written from a sandboxed script\n")


def try_ptrace():
    raw_syscall(SYS_PTRACE, PTRACE_ATTACH, os.getppid(), 0, 0)


def try_module():
    fd = os.open("/dev/null", os.O_RDONLY)
    try:
        raw_syscall(SYS_FINIT_MODULE, fd, 0, 0)
    finally:
        os.close(fd)


def try_connect():
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"hello from the script\n")


def try_status():
    with builtins.open("/proc/self/status") as f:
        print("status: " + f.read().replace("\n", " | "))


def try_chmod():
    os.chmod("/etc/shadow", 0o644)


def try_kill():
    os.kill(os.getppid(), 0)


def try_exec():
    import subprocess
    out = subprocess.run(["/bin/echo", "exec works"], capture_output=True, check=True)
    print(out.stdout.decode().strip())


ATTEMPTS = {"shadow": try_shadow, "write": try_write, "ptrace": try_ptrace,
            "module": try_module, "connect": try_connect, "status": try_status,
            "kill": try_kill, "exec": try_exec, "chmod": try_chmod}


def open(readonly):
    attempt = ATTEMPTS.get(nbdkit.export_name())
    if attempt is not None:
        attempt()
        print("attempt %s succeeded" % nbdkit.export_name())
    return os.open(filename, os.O_RDONLY if readonly else os.O_RDWR)


def close(fd):
    os.close(fd)


def get_size(fd):
    return os.fstat(fd).st_size


def pread(fd, buf, offset, flags):
    buf[:] = os.pread(fd, len(buf), offset)


def pwrite(fd, buf, offset, flags):
    os.pwrite(fd, buf, offset)
