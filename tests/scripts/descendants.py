# A script that starts processes in open (issue 18): a forked child, its grandchild, a
# subprocess.Popen(["sleep", "1000"]) and a daemon that called setsid() and double-forked. Each
# writes "ROLE PID" to the file named by pids= itself (the daemon's pid is known only to it).
# With leaders=1, open also forks a child that calls setsid() and one that calls setpgid(0, 0),
# each staying there without exec: same executable and title as the worker, each leading a
# process group (not to be taken for workers). pread at 4096 hangs (for timeout=).
import os
import subprocess
import time

API_VERSION = 2

pidfile = None
leaders = False
helpers = []


def config(key, value):
    global pidfile, leaders
    if key == "pids":
        pidfile = value
    elif key == "leaders":
        leaders = value == "1"
    else:
        raise RuntimeError("unknown parameter " + key)


def record(role):
    fd = os.open(pidfile, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(fd, ("%s %d\n" % (role, os.getpid())).encode())
    os.close(fd)


def forked(body):
    """Run body() in a forked child that never returns into the worker's code."""
    pid = os.fork()
    if pid == 0:
        try:
            body()
        finally:
            os._exit(0)
    return pid


def child():
    record("child")
    forked(grandchild)
    time.sleep(1000)


def grandchild():
    record("grandchild")
    time.sleep(1000)


def daemon_first():
    os.setsid()
    forked(daemon)   # the first child exits at once: the daemon is an orphan


def daemon():
    record("daemon")
    time.sleep(1000)


def session_leader():
    os.setsid()
    record("session-leader")
    time.sleep(1000)


def group_leader():
    os.setpgid(0, 0)
    record("group-leader")
    time.sleep(1000)


def open(readonly):
    if leaders:
        forked(session_leader)
        forked(group_leader)
    forked(child)
    popen = subprocess.Popen(["sleep", "1000"])
    helpers.append(popen)
    fd = os.open(pidfile, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(fd, ("popen %d\n" % popen.pid).encode())
    os.close(fd)
    os.waitpid(forked(daemon_first), 0)
    return 1


def get_size(h):
    return 1024 * 1024


def pread(h, buf, offset, flags):
    if offset == 4096:
        time.sleep(1000)
    buf[:] = bytes(len(buf))
