# Debugging a script while nbdkit serves: the worker's process title, tools/pyworker-debug
# (list, stacks, attach) in the foreground and in daemon mode, and faulthandler on SIGUSR2.
# Each gdb run stops only the worker it reads, for about a second.

import os
import signal
import subprocess
import threading
import time
import unittest

import harness
from harness import NbdkitTestCase, pid_alive, wait_until

TOOL = os.path.join(harness.SOURCE_ROOT, "tools", "pyworker-debug")
FUNCTION = "waiting_for_the_debugger"
TOOL_TIMEOUT = 90  # seconds for one run of the tool (gdb takes ~1 s a worker)


def read_stat(pid):
    with open("/proc/%d/stat" % pid) as f:
        text = f.read()
    return text[text.rindex(")") + 2:].split()


def tracer_of(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("TracerPid:"):
                return int(line.split()[1])
    return 0


class Reader(threading.Thread):
    """Reads 4 KiB at offset 1 MiB - 4 KiB... over and over on its own connection, counting
    answers, until stopped: the connection that must be served while another one is blocked."""

    def __init__(self, handle):
        super().__init__(daemon=True)
        self.handle = handle
        self.count = 0
        self.errors = []
        self.stopping = threading.Event()

    def run(self):
        while not self.stopping.is_set():
            try:
                data = self.handle.pread(4096, 8192)
                if data != bytes([16]) * 4096:
                    self.errors.append("wrong data")
                self.count += 1
            except Exception as e:  # reported by the test
                self.errors.append(repr(e))
                return
            time.sleep(0.005)

    def stop(self):
        self.stopping.set()
        self.join(30)


class DebuggerTestCase(NbdkitTestCase):

    def tool(self, *args, stdin=subprocess.DEVNULL, timeout=TOOL_TIMEOUT):
        return self.run_cmd([TOOL] + [str(a) for a in args], stdin=stdin, timeout=timeout)


@unittest.skipIf(harness.REFERENCE, "no worker process under nbdkit python")
class DebuggingTest(DebuggerTestCase):

    def setUp(self):
        super().setUp()
        self.marker = os.path.join(self.tmp, "in-function")
        self.release = os.path.join(self.tmp, "release")
        # A blocked callback must never outlive the test: release it before nbdkit is stopped.
        self.addCleanup(self.release_callback)

    def release_callback(self):
        with open(self.release, "w"):
            pass

    def blocker(self):
        return self.script("debug-blocker.py")

    def block_a_read(self, server):
        """Starts a read that blocks in the script's FUNCTION; returns (thread, result)."""
        h = server.connect()
        result = {}

        def read():
            try:
                result["data"] = h.pread(512, 0)
            except Exception as e:
                result["error"] = e

        thread = threading.Thread(target=read, daemon=True)
        thread.start()
        self.assertTrue(wait_until(lambda: os.path.exists(self.marker), 30),
                        "the read never reached %s()" % FUNCTION)
        return thread, result

    def finish_blocked_read(self, thread, result):
        self.release_callback()
        thread.join(30)
        self.assertFalse(thread.is_alive(), "the blocked read never returned")
        self.assertNotIn("error", result)
        self.assertEqual(result["data"], bytes(512))

    def test_process_title(self):
        script = self.blocker()
        server = self.start(script, "marker=" + self.marker, "release=" + self.release)
        [worker] = self.assertWorkerRunning()
        with open("/proc/%d/cmdline" % worker, "rb") as f:
            cmdline = f.read()
        title = cmdline.split(b"\0")[0].decode()
        self.assertEqual(title, "nbdkit-pyworker-worker %s (nbdkit %d)"
                         % (os.path.basename(script), server.pid))
        self.assertEqual(cmdline.strip(b"\0"), title.encode(), "stale argv after the title")
        ps = self.run_cmd(["ps", "-o", "args=", "-p", str(worker)], check=True)
        self.assertEqual(ps.stdout.strip(), title)
        with open("/proc/%d/comm" % worker) as f:
            self.assertEqual(f.read().strip(), ("pyw:" + os.path.basename(script))[:15])

    def test_list(self):
        server = self.start(self.blocker(), "marker=" + self.marker, "release=" + self.release)
        [worker] = self.assertWorkerRunning()
        r = self.tool("list", server.pid)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("nbdkit %d: 1 worker" % server.pid, r.stdout)
        self.assertRegex(r.stdout, r"(?m)^%d +%d +\d+ +%s: sleeping$"
                         % (worker, server.pid, os.path.basename(server.script)))
        # The bare pid means list too.
        self.assertEqual(self.tool(server.pid).stdout, r.stdout)
        self.assertNotEqual(self.tool("list", "--pidfile", os.path.join(self.tmp, "none"))
                            .returncode, 0)

    def test_stacks_while_another_connection_is_served(self):
        server = self.start(self.blocker(), "marker=" + self.marker, "release=" + self.release)
        [worker] = self.assertWorkerRunning()
        thread, result = self.block_a_read(server)
        reader = Reader(server.connect())
        reader.start()
        try:
            self.assertTrue(wait_until(lambda: reader.count >= 20, 30),
                            "second connection not served while the first is blocked")
            r = self.tool("stacks", server.pid)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            # The Python stack, innermost function first, then the callback that called it.
            self.assertRegex(r.stdout, r'File "[^"]*%s", line \d+, in %s\n.*\n'
                             r'  File "[^"]*", line \d+, in pread'
                             % (os.path.basename(server.script), FUNCTION))
            self.assertIn("--- C stack of every thread (bt) ---", r.stdout)
            self.assertRegex(r.stdout, r"#\d+ .* in main \(")  # the C stack is there too
            self.assertIn("worker %d: %s" % (worker, os.path.basename(server.script)),
                          r.stdout)
            # gdb has let go: the worker runs on, untraced, and keeps serving.
            self.assertEqual(tracer_of(worker), 0)
            self.assertNotIn(read_stat(worker)[0], "tT")
            served = reader.count
            self.assertTrue(wait_until(lambda: reader.count >= served + 20, 30),
                            "second connection not served after the stacks were taken")
        finally:
            reader.stop()
        self.assertEqual(reader.errors, [])
        self.assertTrue(thread.is_alive(), "the blocked read returned before its release")
        self.finish_blocked_read(thread, result)
        self.assertEqual(self.assertWorkerRunning(), [worker], "the worker was replaced")

    def test_stacks_given_a_worker_pid(self):
        server = self.start(self.blocker(), "marker=" + self.marker, "release=" + self.release)
        [worker] = self.assertWorkerRunning()
        thread, result = self.block_a_read(server)
        r = self.tool("stacks", worker)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("in %s" % FUNCTION, r.stdout)
        self.finish_blocked_read(thread, result)

    def test_attach(self):
        # attach execs an interactive gdb; here its commands come from stdin.
        server = self.start(self.blocker(), "marker=" + self.marker, "release=" + self.release)
        [worker] = self.assertWorkerRunning()
        thread, result = self.block_a_read(server)
        # attach selects the thread that runs the script, at its innermost Python code.
        commands = "py-bt\npy-locals\nthread apply all py-bt\nquit\n"
        with open(os.path.join(self.tmp, "gdb-commands"), "w+") as f:
            f.write(commands)
            f.seek(0)
            r = self.tool("attach", server.pid, stdin=f)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("attaching gdb to worker %d" % worker, r.stdout)
        self.assertIn("in %s" % FUNCTION, r.stdout)          # py-bt
        self.assertIn(">45            time.sleep(0.02)", r.stdout)  # py-list, run by attach
        self.assertRegex(r.stdout, r"Locals for %s\nseconds = 60\npolls_left = \d+\n" % FUNCTION)  # py-locals
        self.assertRegex(r.stdout, r"Locals for pread\n(.*\n)*offset = 0\n")
        self.assertEqual(tracer_of(worker), 0)
        self.finish_blocked_read(thread, result)

    def test_sigusr2_prints_python_stacks_to_the_log(self):
        server = self.start(self.blocker(), "marker=" + self.marker, "release=" + self.release)
        [worker] = self.assertWorkerRunning()
        thread, result = self.block_a_read(server)
        os.kill(worker, signal.SIGUSR2)
        self.assertTrue(wait_until(lambda: FUNCTION in server.stderr(), 15), server.stderr())
        self.assertIn("in pread", server.stderr())
        self.assertTrue(pid_alive(worker))
        self.finish_blocked_read(thread, result)


@unittest.skipIf(harness.REFERENCE, "no worker process under nbdkit python")
class DaemonDebuggingTest(DebuggerTestCase):

    def test_list_and_stacks_of_a_daemon(self):
        # The daemon serves from a child of the process that started the first worker: the
        # worker is not its child, and is found by its sockets and pipe.
        pidfile = os.path.join(self.tmp, "nbdkit.pid")
        sock = os.path.join(self.tmp, "daemon.sock")
        script = self.script("debug-blocker.py")
        release = os.path.join(self.tmp, "release")
        with open(release, "w"):
            pass  # nothing blocks here
        self.addCleanup(self.kill_pidfile, pidfile)
        r = self.run_nbdkit("-P", pidfile, "-U", sock, script=script,
                            params=["marker=" + os.path.join(self.tmp, "m"),
                                    "release=" + release])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(wait_until(lambda: harness.pidfile_written(pidfile), 10), "no pidfile")
        self.assertTrue(wait_until(lambda: harness.listening(sock), 10), "no socket")
        with open(pidfile) as f:
            pid = int(f.read())
        [worker] = self.assertWorkerRunning()
        self.assertNotEqual(int(read_stat(worker)[1]), pid, "the worker is the daemon's child")

        r = self.tool("list", "--pidfile", pidfile)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("nbdkit %d: 1 worker" % pid, r.stdout)
        self.assertRegex(r.stdout, r"(?m)^%d +\d+ +\d+ +%s: "
                         % (worker, os.path.basename(script)))

        # Another nbdkit's workers are not listed as this one's.
        other = self.start(self.script("debug-blocker.py"), "marker=x", "release=" + release)
        r2 = self.tool("list", other.pid)
        self.assertNotIn("%d " % worker, r2.stdout)
        self.assertIn("nbdkit %d: 1 worker" % other.pid, r2.stdout)

        r = self.tool("stacks", "--pidfile", pidfile)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("worker %d: %s" % (worker, os.path.basename(script)), r.stdout)

        # A replacement, started by the daemon itself (its child), is found too.
        os.kill(worker, signal.SIGKILL)
        self.assertTrue(wait_until(lambda: not pid_alive(worker), 10))
        def served():
            # A connection made before the plugin noticed the death may fail: reconnect.
            h = harness.nbd.NBD()
            self.handles.append(h)
            try:
                h.connect_unix(sock)
                return h.pread(512, 512) == bytes([1]) * 512
            except harness.nbd.Error:
                return False
        self.assertTrue(wait_until(served, 20, interval=0.2), "no replacement worker")
        r = self.tool("list", "--pidfile", pidfile)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("nbdkit %d: 1 worker" % pid, r.stdout)
        self.assertRegex(r.stdout, r"(?m)^\d+ +%d +\d+ +%s: " % (pid, os.path.basename(script)))
        self.assertNotIn("%d " % worker, r.stdout)


if __name__ == "__main__":
    harness.main()
