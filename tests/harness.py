# Shared harness for the integration tests: real nbdkit, real clients.
#
# Run under /usr/bin/python3 (Debian's, which has the libnbd `nbd` module). meson sets:
#   PYWORKER_PLUGIN       path of the built nbdkit-pyworker-plugin.so
#   PYWORKER_WORKER       path of the built nbdkit-pyworker-worker
#   PYWORKER_SOURCE_ROOT  the source tree (for examples/ and tests/scripts/)
# Without them, paths default to <source>/build/... so that a file can be run by hand:
#   /usr/bin/python3 -m unittest -v tests/test_basic.py
#
# Every nbdkit a test starts has a watchdog (SIGKILL after NBDKIT_TIMEOUT seconds unless the test
# asks for longer) and dies with the test process (PR_SET_PDEATHSIG); teardown stops it and then
# asserts that no worker spawned for this test is still alive. Workers are told apart by a token
# unique to the test: it is in the file name of the test's copy of its script (the worker's LABEL
# argument) and in the environment (PYWORKER_TEST_TOKEN) nbdkit and so the worker inherit.

import ctypes
import errno
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import unittest
import uuid

try:
    import nbd
except ImportError:  # fail every test loudly rather than skip: see PyworkerTestCase.setUp
    nbd = None

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_ROOT = os.environ.get("PYWORKER_SOURCE_ROOT", os.path.dirname(HERE))
PLUGIN = os.environ.get("PYWORKER_PLUGIN",
                        os.path.join(SOURCE_ROOT, "build", "plugin", "nbdkit-pyworker-plugin.so"))
WORKER = os.environ.get("PYWORKER_WORKER",
                        os.path.join(SOURCE_ROOT, "build", "worker", "nbdkit-pyworker-worker"))
WORKER_NAME = "nbdkit-pyworker-worker"
# PYWORKER_INSTALLED=1 (tools/test --package): the installed package is tested, as users run it:
# nbdkit loads the plugin by its short name from its plugindir, and the plugin finds its
# worker where the package put it. Tests that need a build tree's own programs skip.
INSTALLED = os.environ.get("PYWORKER_INSTALLED") == "1"
INSTALLED_WORKER = "/usr/libexec/nbdkit-pyworker/" + WORKER_NAME
if INSTALLED:
    PLUGIN = "pyworker"
    WORKER = INSTALLED_WORKER
NEEDS_BUILD_TREE = "needs the build tree's evil worker (not installed by the package)"
EXAMPLES = os.path.join(SOURCE_ROOT, "examples")
SCRIPTS = os.path.join(SOURCE_ROOT, "tests", "scripts")

NBDKIT_TIMEOUT = 120   # seconds any one nbdkit may live
STARTUP_TIMEOUT = 30   # seconds for nbdkit to create its socket
CLIENT_TIMEOUT = 60    # seconds for one client command
WORKER_EXIT_TIMEOUT = 6  # the brief: "poll up to ~5 s", plus slack for a loaded machine

# Clients such as nbdsh run `python3` from PATH: make it Debian's, which has the nbd module.
PATH = "/usr/bin:/bin:/usr/sbin:/sbin:" + os.environ.get("PATH", "")

# A sanitized build (tests/meson.build sets these): "address,undefined" or "" when not.
SANITIZE = os.environ.get("PYWORKER_SANITIZE", "")
ASAN = "address" in SANITIZE.split(",")
if os.environ.get("PYWORKER_NBDKIT_PRELOAD"):
    # Every nbdkit found through PATH is then tests/sanitizer/nbdkit, which preloads the
    # sanitizer runtime into nbdkit alone (clients must run without it); this process's PATH
    # too, for the nbdkit that libnbd's connect_command starts.
    PATH = os.path.join(HERE, "sanitizer") + ":" + PATH
    os.environ["PATH"] = PATH
# Where tools/test --sanitize has the sanitizers write their reports; each test fails on any
# report that appeared while it ran (tools/test fails the run on any report at all).
SANITIZER_REPORTS = os.environ.get("PYWORKER_SANITIZER_REPORTS")
NO_RLIMIT_AS = "memory= (RLIMIT_AS) cannot work under AddressSanitizer: its shadow memory " \
               "alone takes terabytes of address space"
# How much slower than a quiet machine to allow for (tools/test exports its multiplier; a
# sanitized build runs about twice as slow). Timing bounds in the tests go through scaled().
SLOW = float(os.environ.get("PYWORKER_TIMEOUT_MULTIPLIER") or (2 if SANITIZE else 1))


def scaled(seconds):
    return seconds * SLOW


REQUIRED_TOOLS = ["nbdkit", "nbdinfo", "nbdcopy", "nbdsh", "qemu-img"]

PYWORKER = "pyworker"  # plugin= values for NbdkitTestCase.start()
PYTHON = "python"      # nbdkit's own in-process python plugin, the reference

# PYWORKER_TEST_REFERENCE=1 runs every "pyworker" server on nbdkit's python plugin instead and
# skips the worker-process checks: a check of the tests themselves (what fails then is either a
# test bug or a place where pyworker deliberately differs, such as print() under -s).
REFERENCE = os.environ.get("PYWORKER_TEST_REFERENCE") == "1"

_libc = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1


def _die_with_parent():
    # Runs in the child between fork and exec: nbdkit dies if the test process dies.
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def errno_name(e):
    """The errno of an nbd.Error as a name ('EIO'); libnbd stores a name or a number."""
    value = e.errno
    if isinstance(value, int):
        return errno.errorcode.get(value, str(value))
    return value


def pid_alive(pid):
    """True if pid exists and is not a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def stop_process(pid, timeout=10):
    """SIGSTOP `pid` and wait until every thread of it has stopped. The signal is only queued
    by kill(): until a thread of the process runs and takes it, the others go on (on a loaded
    machine a worker's lane thread answered a request after kill() had returned)."""
    os.kill(pid, signal.SIGSTOP)

    def all_threads_stopped():
        try:
            tasks = os.listdir("/proc/%d/task" % pid)
        except FileNotFoundError:
            return True  # gone: nothing of it runs
        for task in tasks:
            try:
                with open("/proc/%d/task/%s/stat" % (pid, task)) as f:
                    stat = f.read()
            except FileNotFoundError:
                continue
            if stat[stat.rindex(")") + 2] not in "Tt":
                return False
        return True
    if not wait_until(all_threads_stopped, timeout, interval=0.01):
        raise AssertionError("process %d did not stop within %s s of SIGSTOP" % (pid, timeout))


def _stat_fields(pid):
    """/proc/PID/stat fields after the command name: [state, ppid, pgrp, session, ...]."""
    with open("/proc/%d/stat" % pid) as f:
        return f.read().rsplit(")", 1)[1].split()


def _has_worker_image(pid):
    """pid runs the worker's executable, or carries its title (readable without ptrace)."""
    try:
        exe = os.path.basename(os.readlink("/proc/%d/exe" % pid))
    except OSError:
        exe = ""
    if exe.startswith(WORKER_NAME):
        return True
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            argv0 = f.read().split(b"\0")[0].decode(errors="replace")
    except OSError:
        return False
    return os.path.basename(argv0) == WORKER_NAME or argv0.startswith(WORKER_NAME + " ")


def spawned_as_worker(pid):
    """Whether pid looks spawned by the plugin as a worker (posix_spawn with setpgroup: it leads
    a process group of its own in nbdkit's session). What a script forks without exec has the
    worker's executable and title too: a plain fork leads no group; one that called setsid()
    leads its session as well; one that called setpgid(0, 0) has a parent of the worker's
    image (its forker, or the worker itself: the child subreaper of its script's orphans).
    tools/pyworker-debug tells them apart the same way."""
    try:
        fields = _stat_fields(pid)
        parent, group, session = int(fields[1]), int(fields[2]), int(fields[3])
    except (OSError, IndexError, ValueError):
        return False
    return (group == pid and session != pid and _has_worker_image(pid)
            and not _has_worker_image(parent))


def worker_pids(token):
    """Live worker processes that carry `token` in their argv or environment (not the
    processes their scripts forked: script_pids() finds those)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        if not spawned_as_worker(pid):
            continue
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                argv = f.read().split(b"\0")
            tok = token.encode()
            mine = any(tok in a for a in argv)
            if not mine:
                try:
                    with open("/proc/%d/environ" % pid, "rb") as f:
                        mine = (b"PYWORKER_TEST_TOKEN=" + tok) in f.read().split(b"\0")
                except OSError:
                    pass
            if mine and pid_alive(pid):
                found.append(pid)
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return found


def script_pids(token):
    """Live processes other than this one that carry `token` in their environment: what a
    test's nbdkit, workers and the processes their scripts started inherited
    (PYWORKER_TEST_TOKEN). Once nbdkit has exited, none should be left."""
    found = []
    marker = b"PYWORKER_TEST_TOKEN=" + token.encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open("/proc/%s/environ" % entry, "rb") as f:
                if marker in f.read().split(b"\0") and pid_alive(int(entry)):
                    found.append(int(entry))
        except OSError:
            continue
    return found


def child_pids(parent, include_zombies=False):
    """Processes whose parent is `parent` (by /proc/*/stat: /proc/PID/task/TID/children lists
    only a thread's own children, and a worker may be made on a thread that has ended)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == parent and (include_zombies or fields[0] != "Z"):
                found.append(int(entry))
    return found


def sanitizer_reports():
    """Paths of the sanitizer reports written so far in a sanitized run ([] otherwise)."""
    if not SANITIZER_REPORTS:
        return []
    return [os.path.join(SANITIZER_REPORTS, name) for name in os.listdir(SANITIZER_REPORTS)]


def read_head(path, limit=8192):
    with open(path, errors="replace") as f:
        return f.read(limit)


def pidfile_written(path):
    """nbdkit's -P file exists and holds the whole pid (it is created before it is written)."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return False
    return text.endswith("\n") and text.strip().isdigit()


def listening(path):
    """True once a Unix socket bound at `path` accepts connections. Wait for this, not for the
    file: nbdkit binds (the file appears) a moment before it listens, and a connection in
    between is refused (ECONNREFUSED, seen on a loaded machine)."""
    try:
        with open("/proc/net/unix") as f:
            next(f)  # the header
            for line in f:
                fields = line.split(None, 7)  # Num RefCount Protocol Flags Type St Inode Path
                if len(fields) == 8 and fields[7].rstrip("\n") == path:
                    if int(fields[3], 16) & 0x10000:  # __SO_ACCEPTCON: it listens
                        return True
    except OSError:
        pass
    return False


def wait_until(predicate, timeout, interval=0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            return value
        time.sleep(interval)


class Nbdkit:
    """One nbdkit process started by a test."""

    def __init__(self, test, argv, env, sock, stderr_path, popen, lifetime=NBDKIT_TIMEOUT):
        self.test = test
        self.argv = argv
        self.env = env
        self.sock = sock
        self.stderr_path = stderr_path
        self.proc = popen
        self.pid = popen.pid
        self.watchdog = threading.Timer(lifetime, self._expire)
        self.watchdog.daemon = True
        self.watchdog.start()
        self.expired = False

    def _expire(self):
        self.expired = True
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    @property
    def uri(self):
        return "nbd+unix:///?socket=" + self.sock

    def stderr(self):
        with open(self.stderr_path, "r", errors="replace") as f:
            return f.read()

    def connect(self, export="", meta_contexts=()):
        h = nbd.NBD()
        if export:
            h.set_export_name(export)
        for ctx in meta_contexts:
            h.add_meta_context(ctx)
        h.connect_unix(self.sock)
        self.test.handles.append(h)
        return h

    def wait(self, timeout=30):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, sig=signal.SIGTERM, timeout=15):
        """Send `sig` and wait for exit (SIGKILL after `timeout`). Returns the exit status."""
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(sig)
            except ProcessLookupError:
                pass
            if self.wait(timeout) is None:
                self.proc.kill()
                self.proc.wait(10)
        self.watchdog.cancel()
        return self.proc.returncode


class NbdkitTestCase(unittest.TestCase):
    """Base class: temp dir, unique token, nbdkit start/stop, worker leak check."""

    def setUp(self):
        missing = [t for t in REQUIRED_TOOLS if shutil.which(t, path=PATH) is None]
        self.assertIsNotNone(nbd, "the python3 nbd module (python3-libnbd) is missing")
        self.assertEqual(missing, [], "required tools missing (run tools/setup)")
        if INSTALLED:
            self.assertTrue(os.access(WORKER, os.X_OK), "package not installed: no %s" % WORKER)
        elif not REFERENCE:
            self.assertTrue(os.path.isfile(PLUGIN), "plugin not built: %s" % PLUGIN)
            self.assertTrue(os.access(WORKER, os.X_OK), "worker not built: %s" % WORKER)
        self.token = "t" + uuid.uuid4().hex[:12]
        self.tmp = tempfile.mkdtemp(prefix="pyworker-%s-" % self.token)
        self.handles = []
        self.servers = []
        self.extra_pids = []  # daemons etc., killed in teardown
        self.reports_before = sanitizer_reports()
        self.addCleanup(self._teardown)

    def close_handles(self):
        """Disconnect every client: nbdkit waits for open connections before it exits."""
        for h in self.handles:
            try:
                h.shutdown()
            except Exception:
                pass
            try:
                h.close()
            except Exception:
                pass
        self.handles = []

    def _teardown(self):
        self.close_handles()
        for s in self.servers:
            s.stop()
        for pid in self.extra_pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            if not wait_until(lambda: not pid_alive(pid), 10):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        left = self.wait_workers_gone()
        # Kill leftovers so that one failing test does not leak into the next, then fail.
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        # Then what the scripts started (worker/descendants.h): nothing outlives its worker.
        stray = [] if REFERENCE else [p for p in script_pids(self.token) if p not in left]
        stray_titles = {}
        for pid in stray:
            try:
                with open("/proc/%d/cmdline" % pid, "rb") as f:
                    stray_titles[pid] = f.read().replace(b"\0", b" ").decode(errors="replace")
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.assertEqual(left, [], "worker processes left after nbdkit exited")
        self.assertEqual(stray_titles, {}, "processes of the script left after nbdkit exited")
        new_reports = sorted(set(sanitizer_reports()) - set(self.reports_before))
        self.assertEqual(new_reports, [], "sanitizer reports:\n" + "".join(
            "=== %s\n%s" % (path, read_head(path)) for path in new_reports))

    # --- helpers -----------------------------------------------------------------------------

    def env(self, **extra):
        env = dict(os.environ)
        env["PATH"] = PATH
        env["PYWORKER_TEST_TOKEN"] = self.token
        env.pop("LIBNBD_DEBUG", None)
        env.update(extra)
        return env

    def script(self, name, text=None, directory=None):
        """A uniquely named copy of tests/scripts/<name> (or of `text`, or of examples/<name>
        when directory=EXAMPLES) in the test's temp dir; returns its path."""
        if text is None:
            with open(os.path.join(directory or SCRIPTS, name)) as f:
                text = f.read()
        base = os.path.splitext(os.path.basename(name))[0]
        path = os.path.join(self.tmp, "%s-%s.py" % (base, self.token))
        with open(path, "w") as f:
            f.write(text)
        return path

    def example(self, name):
        return self.script(name, directory=EXAMPLES)

    def plugin_path(self, plugin=PYWORKER):
        """What to name on nbdkit's command line for `plugin`."""
        if plugin == PYWORKER and not REFERENCE:
            return PLUGIN
        return "python"

    def plugin_args(self, plugin, script, params):
        if plugin == PYWORKER and REFERENCE:
            plugin = PYTHON
        if plugin == PYWORKER:
            return [PLUGIN, "script=" + script] + list(params)
        if plugin == PYTHON:
            return ["python", "script=" + script] + list(params)
        raise ValueError(plugin)

    def popen(self, argv, env=None, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
              stderr_name=None):
        stderr_path = os.path.join(self.tmp, stderr_name or "stderr-%d.txt" % len(self.servers))
        with open(stderr_path, "wb") as err:
            proc = subprocess.Popen(argv, stdin=stdin, stdout=stdout, stderr=err,
                                    env=env or self.env(), preexec_fn=_die_with_parent)
        return proc, stderr_path

    def start(self, script, *params, plugin=PYWORKER, args=(), env=None, wait=True,
              lifetime=NBDKIT_TIMEOUT):
        """nbdkit -f -U SOCK [args] PLUGIN script=SCRIPT params...; waits for the socket.
        The watchdog kills it after `lifetime` seconds."""
        sock = os.path.join(self.tmp, "nbd-%d.sock" % len(self.servers))
        argv = (["nbdkit", "-f", "-U", sock] + list(args)
                + self.plugin_args(plugin, script, params))
        proc, stderr_path = self.popen(argv, env=env)
        server = Nbdkit(self, argv, env, sock, stderr_path, proc, lifetime)
        server.script = script
        self.servers.append(server)
        if wait:
            wait_until(lambda: listening(sock) or proc.poll() is not None, STARTUP_TIMEOUT)
            if not listening(sock):
                server.stop()
                self.fail("nbdkit did not start (exit %s): %s\nstderr:\n%s"
                          % (proc.returncode, " ".join(argv), server.stderr()))
        return server

    def run_nbdkit(self, *args, script=None, params=(), plugin=PYWORKER, env=None,
                   timeout=CLIENT_TIMEOUT, stdin=subprocess.DEVNULL):
        """Run nbdkit to completion (for --run, failures, --dump-plugin)."""
        argv = ["nbdkit"] + list(args)
        if script is not None:
            argv += self.plugin_args(plugin, script, params)
        else:
            argv += list(params)
        return self.run_cmd(argv, env=env, timeout=timeout, stdin=stdin)

    def run_cmd(self, argv, env=None, timeout=CLIENT_TIMEOUT, stdin=subprocess.DEVNULL,
                check=False, cwd=None):
        proc = subprocess.Popen(argv, stdin=stdin, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env or self.env(), cwd=cwd or self.tmp,
                                preexec_fn=_die_with_parent)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired as e:
            proc.kill()
            # Another process (a daemon, a worker) may still hold the pipes: do not wait for
            # their EOF again.
            try:
                out, err = proc.communicate(timeout=5)
            except subprocess.TimeoutExpired as e2:
                out, err = e2.stdout or e.stdout or b"", e2.stderr or e.stderr or b""
                proc.stdout.close()
                proc.stderr.close()
                proc.wait(5)
            self.fail("timed out after %ss (exit %s): %s\nstdout:\n%s\nstderr:\n%s"
                      % (timeout, proc.returncode, " ".join(argv),
                         out.decode(errors="replace"), err.decode(errors="replace")))
        result = subprocess.CompletedProcess(argv, proc.returncode,
                                             out.decode(errors="replace"),
                                             err.decode(errors="replace"))
        if check and result.returncode != 0:
            self.fail("command failed (exit %d): %s\nstdout:\n%s\nstderr:\n%s"
                      % (result.returncode, " ".join(argv), result.stdout, result.stderr))
        return result

    def kill_pidfile(self, pidfile):
        """Cleanup for a daemon: stop it however its test ended (before the worker check)."""
        self.close_handles()  # nbdkit waits for connected clients before it exits
        try:
            with open(pidfile) as f:
                pid = int(f.read())
        except (OSError, ValueError):
            return
        if pid_alive(pid):
            os.kill(pid, signal.SIGTERM)
            if not wait_until(lambda: not pid_alive(pid), 10):
                os.kill(pid, signal.SIGKILL)

    def wait_workers_gone(self, timeout=WORKER_EXIT_TIMEOUT):
        """Polls until no worker of this test is alive; returns those still alive."""
        wait_until(lambda: not worker_pids(self.token), timeout)
        return worker_pids(self.token)

    def assertWorkerRunning(self):
        if REFERENCE:
            return []
        pids = wait_until(lambda: worker_pids(self.token), 5)
        self.assertTrue(pids, "no %s process found for this test (token %s)"
                        % (WORKER_NAME, self.token))
        return pids

    def continue_under_gdb(self, pid):
        """gdb attaches to `pid` (a worker waiting for a debugger, debug-wait=) and lets it
        run; detached when the test ends."""
        gdb = shutil.which("gdb", path=PATH)
        self.assertIsNotNone(gdb, "gdb is missing (run tools/setup)")
        debugger = subprocess.Popen([gdb, "-p", str(pid), "-batch", "-ex", "continue"],
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)

        def stop_debugger():
            if debugger.poll() is None:
                debugger.kill()
            debugger.wait(10)
        self.addCleanup(stop_debugger)

    def assertNbdError(self, expected, func, *args, **kwargs):
        """func(*args) raises nbd.Error whose errno name is `expected` ('EIO', ...)."""
        with self.assertRaises(nbd.Error) as cm:
            func(*args, **kwargs)
        self.assertEqual(errno_name(cm.exception), expected, str(cm.exception))
        return cm.exception


def timed_parallel_reads(server, connections, per_connection):
    """Opens `connections` connections to `server`, issues `per_connection` 4 KiB reads on
    each at once, waits for them all; returns the seconds that took (thread-model tests)."""
    handles = [server.connect() for _ in range(connections)]
    start = time.monotonic()
    cookies = []
    for i, h in enumerate(handles):
        for k in range(per_connection):
            offset = (i * per_connection + k) * 4096
            cookies.append((h, h.aio_pread(nbd.Buffer(4096), offset)))
    for h, cookie in cookies:
        while not h.aio_command_completed(cookie):
            h.poll(-1)
    return time.monotonic() - start


def pattern(size, seed=0):
    """Deterministic non-trivial bytes: every 8-byte word differs."""
    out = bytearray(size)
    word = 0x9E3779B97F4A7C15 ^ (seed * 0x100000001B3)
    for i in range(0, size - size % 8, 8):
        word = (word * 6364136223846793005 + 1442695040888963407) & 0xFFFFFFFFFFFFFFFF
        out[i:i + 8] = word.to_bytes(8, "little")
    return bytes(out)


def fast_pattern(size, seed=0):
    """Like pattern() but cheap for tens of MiB: a 64 KiB pattern block, tagged per block."""
    block = pattern(65536, seed)
    out = bytearray()
    n = 0
    while len(out) < size:
        out += n.to_bytes(8, "little") + block[8:]
        n += 1
    return bytes(out[:size])


def main():
    unittest.main(verbosity=2)
