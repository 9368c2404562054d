"""pdb=on: breakpoint() in a script stops that request and waits for `tools/pyworker-debug pdb`.

A request stopped at a breakpoint, an expression evaluated in its frame through the tool fed
from a pipe, 'c' and the client's read returning the right data; other connections (and other
requests of a PARALLEL script) served meanwhile; 'q' failing the request with EIO; a session
ended by end of input or by killing the tool letting the request go on; pdb=off as in-process;
another user refused; timeout= not killing a request that waits; debug-wait=true stopping
before the script's first line; breakpoints at load; the rendezvous removed with the worker.
"""

import glob
import os
import signal
import stat
import subprocess
import threading
import unittest

import harness
from harness import NbdkitTestCase, errno_name, nbd, wait_until

TOOL = os.path.join(harness.SOURCE_ROOT, "tools", "pyworker-debug")
WAIT = 30  # seconds any one step may take on a loaded machine

# Reads at offset 8192 stop at breakpoint() (line 10); every block reads as its number.
SCRIPT = """import nbdkit
API_VERSION = 2
def thread_model(): return nbdkit.THREAD_MODEL_PARALLEL
def open(readonly): return 1
def get_size(h): return 1 << 20
def pread(h, buf, offset, flags):
    tripled = offset * 3
    if offset == 8192:
        %s
        pass
    buf[:] = bytes([offset // 4096]) * len(buf)
"""
BREAKPOINT_LINE = 9


def block(offset, count=512):
    return bytes([offset // 4096]) * count


def rendezvous_of(worker):
    """The directory where `worker`'s breakpoints wait (one per worker)."""
    [directory] = glob.glob(os.path.join(os.environ.get("TMPDIR") or "/tmp",
                                         "pyworker-pdb-%d-*" % worker))
    return directory

class Read:
    """One read in flight (libnbd's aio): the one that stops at the breakpoint. The handle is
    used from this thread only; other requests may go on it meanwhile."""

    def __init__(self, handle, offset):
        self.handle = handle
        self.buffer = nbd.Buffer(512)
        self.cookie = handle.aio_pread(self.buffer, offset)
        self.data = self.error = None
        self.done = False

    def is_alive(self):
        if not self.done:
            try:
                self.handle.poll(0)
                if self.handle.aio_command_completed(self.cookie):
                    self.data = bytes(self.buffer.to_bytearray())
                    self.done = True
            except nbd.Error as e:
                self.error = e
                self.done = True
        return not self.done

    def finish(self):
        return wait_until(lambda: not self.is_alive(), WAIT, 0.02)


@unittest.skipIf(harness.REFERENCE, "pdb=on is pyworker's")
class PdbTest(NbdkitTestCase):

    def serve(self, *params, call="breakpoint()", text=None, args=(), wait=True):
        script = self.script("pdb.py", text=text or SCRIPT % call)
        server = self.start(script, "pdb=on", *params, args=args, wait=wait)
        # A test that fails with a request at a breakpoint must not hold nbdkit's exit up (a
        # client's shutdown waits for its requests): let every one go on first.
        self.addCleanup(self.release_breakpoints, server)
        return server

    def release_breakpoints(self, server):
        for _ in range(10):
            if server.proc.poll() is not None or self.tool("pdb", server.pid).returncode != 0:
                return

    def stop_a_read(self, server):
        """The worker, and a read of block 8192 waiting at its breakpoint."""
        [worker] = self.assertWorkerRunning()
        stopped = Read(server.connect(), 8192)
        self.waiting(server)
        return worker, stopped

    def waiting(self, server, count=1):
        """Waits until the log has said `count` times that a breakpoint waits."""
        self.assertTrue(wait_until(lambda: server.stderr().count("waits at a breakpoint")
                                   >= count, WAIT), server.stderr())

    def tool(self, *args, commands="", as_user=None, stdin=None):
        path = os.path.join(self.tmp, "commands-%d" % len(os.listdir(self.tmp)))
        with open(path, "w") as f:
            f.write(commands)
        argv = [TOOL] + [str(a) for a in args]
        if as_user:
            argv = ["setpriv", "--reuid=" + as_user, "--regid=nogroup", "--clear-groups"] + argv
        with open(path) as f:
            return self.run_cmd(argv, stdin=stdin or f, cwd="/")

    def test_breakpoint_waits_evaluates_and_continues(self):
        server = self.serve()
        worker, stopped = self.stop_a_read(server)
        self.assertIn("pyworker: worker process %d waits at a breakpoint in pread (%s:%d): "
                      "tools/pyworker-debug pdb %d"
                      % (worker, server.script, BREAKPOINT_LINE, server.pid), server.stderr())
        # Meanwhile another connection is served, and other requests of this PARALLEL script
        # on the same worker: the stopped one holds only its own thread.
        self.assertEqual(bytes(server.connect().pread(512, 4096)), block(4096))
        self.assertEqual(bytes(stopped.handle.pread(512, 12288)), block(12288))
        self.assertTrue(stopped.is_alive(), "the stopped read returned")
        listed = self.tool("list", server.pid)
        self.assertRegex(listed.stdout, r"breakpoint in pread \(%s:%d\), worker %d thread \d+"
                         % (server.script, BREAKPOINT_LINE, worker))

        r = self.tool("pdb", server.pid, commands="p tripled\nw\nc\n")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("stopped in pread (%s:%d)" % (server.script, BREAKPOINT_LINE), r.stdout)
        self.assertIn("(Pdb) 24576\n", r.stdout)          # p, in the request's frame
        self.assertRegex(r.stdout, r"-> pass\n")          # w: where it stands
        self.assertTrue(stopped.finish(), "'c' did not let the read go on")
        self.assertIsNone(stopped.error)
        self.assertEqual(stopped.data, block(8192))
        self.assertNotIn("breakpoint in", self.tool("list", server.pid).stdout)

        # A later breakpoint() waits again; the worker is the same.
        again = Read(stopped.handle, 8192)
        self.waiting(server, 2)
        r = self.tool("pdb", server.pid, worker, commands="c\n")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertTrue(again.finish())
        self.assertEqual(again.data, block(8192))
        self.assertEqual(self.assertWorkerRunning(), [worker])

    def test_quit_fails_the_request_with_eio(self):
        server = self.serve(call="import pdb; pdb.set_trace()")  # pdb's own way in, too
        worker, stopped = self.stop_a_read(server)
        r = self.tool("pdb", server.pid, commands="p offset\nq\n")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("(Pdb) 8192\n", r.stdout)
        self.assertTrue(stopped.finish())
        self.assertIsInstance(stopped.error, nbd.Error)
        self.assertEqual(errno_name(stopped.error), "EIO")
        log = server.stderr()
        self.assertIn("%s: pread: error: Traceback" % server.script, log)
        self.assertIn("bdb.BdbQuit", log)
        # As an exception would: the worker serves on.
        self.assertEqual(bytes(stopped.handle.pread(512, 4096)), block(4096))
        self.assertEqual(self.assertWorkerRunning(), [worker])

    def test_end_of_input_or_a_killed_tool_lets_the_request_go_on(self):
        server = self.serve()
        h = server.connect()
        stopped = Read(h, 8192)
        self.waiting(server)
        r = self.tool("pdb", server.pid, commands="p tripled\n")  # then end of input: 'c'
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("24576", r.stdout)
        self.assertTrue(stopped.finish())
        self.assertEqual(stopped.data, block(8192))

        stopped = Read(h, 8192)
        self.waiting(server, 2)
        tool = subprocess.Popen([TOOL, "pdb", str(server.pid)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                env=self.env())
        self.addCleanup(lambda: tool.poll() is not None or tool.kill())
        tool.stdin.write(b"p tripled\n")
        tool.stdin.flush()
        seen = b""
        while b"24576" not in seen:
            chunk = tool.stdout.read1(4096)
            self.assertTrue(chunk, "the session ended early: %r" % seen)
            seen += chunk
        self.assertTrue(stopped.is_alive(), "the read went on while the session was open")
        tool.kill()  # mid-way, with its stdin still open
        tool.wait(WAIT)
        tool.stdin.close()
        tool.stdout.close()
        self.assertTrue(stopped.finish(), "a killed session did not let the read go on")
        self.assertEqual(stopped.data, block(8192))

    def test_a_waiting_request_outlives_timeout(self):
        server = self.serve("timeout=0.5")  # pread is a lane call; default_export below is RPC
        worker, stopped = self.stop_a_read(server)
        # Several times timeout= at the breakpoint, and stepping: nothing may give up on it.
        threading.Event().wait(2)
        r = self.tool("pdb", server.pid, commands="n\nn\np tripled\nc\n")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("24576", r.stdout)
        self.assertTrue(stopped.finish())
        self.assertIsNone(stopped.error)
        self.assertEqual(stopped.data, block(8192))
        self.assertNotIn("timeout", server.stderr())
        self.assertEqual(self.assertWorkerRunning(), [worker])

    def test_a_breakpoint_in_an_rpc_callback_outlives_timeout(self):
        # default_export() is an RPC call (not a lane): its deadline pauses the same way.
        text = SCRIPT % "pass" + """
def default_export(readonly, is_tls):
    breakpoint()
    return ""
"""
        server = self.serve("timeout=0.5", text=text)
        opened = {}

        def connect():
            try:
                opened["handle"] = server.connect()
            except Exception as e:
                opened["error"] = e
        thread = threading.Thread(target=connect, daemon=True)
        thread.start()
        self.waiting(server)
        self.assertIn("waits at a breakpoint in default_export (%s:" % server.script,
                      server.stderr())
        threading.Event().wait(2)
        r = self.tool("pdb", server.pid, commands="p readonly\nc\n")
        self.assertIn("(Pdb) False\n", r.stdout, r.stderr)
        thread.join(WAIT)
        self.assertNotIn("error", opened, server.stderr())
        self.assertEqual(bytes(opened["handle"].pread(512, 4096)), block(4096))
        self.assertNotIn("timeout", server.stderr())

    def test_another_user_cannot_attach(self):
        server = self.serve()
        worker, stopped = self.stop_a_read(server)
        directory = rendezvous_of(worker)
        st = os.stat(directory)
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o700)
        self.assertEqual(st.st_uid, os.geteuid())  # nbdkit's user

        r = self.tool("pdb", server.pid, commands="c\n", as_user="nobody")
        self.assertNotEqual(r.returncode, 0, r.stdout)
        self.assertIn("only root or nbdkit's user (uid %d) may attach" % os.geteuid(), r.stderr)
        # Even knowing the socket's path: the directory keeps that user out.
        [sock] = glob.glob(os.path.join(directory, "*.sock"))
        r = self.run_cmd(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                          "/usr/bin/python3", "-c",
                          "import socket; socket.socket(socket.AF_UNIX).connect(%r)" % sock],
                         cwd="/")
        self.assertIn("PermissionError", r.stderr)
        self.assertTrue(stopped.is_alive(), "the read went on without a session")

        r = self.tool("pdb", server.pid, commands="c\n")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertTrue(stopped.finish())
        self.assertEqual(stopped.data, block(8192))
        # The rendezvous goes with the worker.
        self.close_handles()
        self.assertEqual(server.stop(), 0)
        self.assertTrue(wait_until(lambda: not os.path.exists(directory), WAIT),
                        "%s is still there" % directory)

    def test_nbdkits_own_user_attaches_under_u(self):
        # -u: the worker takes that user in after_fork; its breakpoints wait in a directory of
        # that user's, whom the tool run as that user (or root) may attach to.
        import pwd
        nobody = pwd.getpwnam("nobody").pw_uid
        os.chmod(self.tmp, 0o755)  # nobody must reach the script
        server = self.serve(args=["-u", "nobody", "-g", "nogroup"])
        os.chmod(server.script, 0o644)
        worker, stopped = self.stop_a_read(server)
        directory = rendezvous_of(worker)
        self.assertEqual(os.stat(directory).st_uid, nobody)
        r = self.tool("pdb", server.pid, commands="p tripled\nc\n", as_user="nobody")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("(Pdb) 24576\n", r.stdout)
        self.assertTrue(stopped.finish())
        self.assertEqual(stopped.data, block(8192))

    def test_the_rendezvous_of_a_killed_worker_is_removed(self):
        server = self.serve()
        worker, stopped = self.stop_a_read(server)
        directory = rendezvous_of(worker)
        os.kill(worker, signal.SIGKILL)  # it cannot clean up: the plugin does
        self.assertTrue(stopped.finish())
        self.assertEqual(errno_name(stopped.error), "EIO")
        self.close_handles()  # the dead worker is let go of with its last connection
        self.assertTrue(wait_until(lambda: not os.path.exists(directory), WAIT),
                        "%s is still there" % directory)

    def test_debug_wait_stops_before_the_first_line(self):
        server = self.serve("debug-wait=true", wait=False)
        self.waiting(server)
        self.assertRegex(server.stderr(), r"pyworker\[\d+\]: worker process \d+ waits at a "
                         r"breakpoint before the script's first line \(%s:1\): "
                         r"tools/pyworker-debug pdb %d" % (server.script, server.pid))
        self.assertFalse(os.path.exists(server.sock))
        r = self.tool("pdb", server.pid, commands="n\nn\np API_VERSION\nc\n")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("-> import nbdkit\n", r.stdout)
        self.assertIn("(Pdb) 2\n", r.stdout)
        self.assertTrue(wait_until(lambda: harness.listening(server.sock), WAIT),
                        server.stderr())
        self.assertEqual(bytes(server.connect().pread(512, 4096)), block(4096))

    def test_breakpoint_at_load_and_in_config(self):
        text = SCRIPT % "pass" + """
LOADED = "yes"
breakpoint()
def config(key, value):
    breakpoint()
"""
        server = self.serve("key=value", text=text, wait=False)
        self.waiting(server)
        self.assertIn("waits at a breakpoint while the script loads (%s:" % server.script,
                      server.stderr())
        r = self.tool("pdb", server.pid, commands="p LOADED\nc\n")
        self.assertIn("(Pdb) 'yes'\n", r.stdout, r.stderr)
        self.waiting(server, 2)
        self.assertIn("waits at a breakpoint in config (%s:" % server.script, server.stderr())
        r = self.tool("pdb", server.pid, commands="p key, value\nc\n")
        self.assertIn("(Pdb) ('key', 'value')\n", r.stdout, r.stderr)
        self.assertTrue(wait_until(lambda: harness.listening(server.sock), WAIT),
                        server.stderr())
        self.assertEqual(bytes(server.connect().pread(512, 4096)), block(4096))

    @unittest.skipUnless(os.geteuid() == 0, "sandbox=on's tests run as root")
    def test_a_sandboxed_worker_waits_and_is_attached(self):
        # sandbox=on: the breakpoints' directory is made before Landlock applies, and the
        # filter leaves the Unix socket alone.
        server = self.serve("sandbox=on")
        stopped = Read(server.connect(), 8192)
        self.waiting(server)
        r = self.tool("pdb", server.pid, commands="p tripled\nc\n")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("(Pdb) 24576\n", r.stdout)
        self.assertTrue(stopped.finish(), "'c' did not let the read go on")
        self.assertEqual(stopped.data, block(8192))


class PdbOffTest(NbdkitTestCase):
    """pdb=off (the default): breakpoint() as in-process, where pdb finds no terminal."""

    def test_breakpoint_fails_the_request_as_in_process(self):
        for plugin in (harness.PYWORKER, harness.PYTHON):
            with self.subTest(plugin=plugin):
                script = self.script("pdb-off-%s.py" % plugin, text=SCRIPT % "breakpoint()")
                server = self.start(script, plugin=plugin)
                h = server.connect()
                self.assertNbdError("EIO", h.pread, 512, 8192)
                self.assertIn("bdb.BdbQuit", server.stderr())
                self.assertEqual(bytes(h.pread(512, 4096)), block(4096))
                self.assertNotIn("waits at a breakpoint", server.stderr())

    def test_sandbox_net_off_is_refused_with_pdb(self):
        script = self.script("pdb.py", text=SCRIPT % "pass")
        r = self.run_nbdkit("-f", "-U", os.path.join(self.tmp, "s"), script=script,
                            params=["pdb=on", "sandbox=on", "sandbox-net=off"])
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("pdb=on: tools/pyworker-debug pdb connects over a socket, which "
                      "sandbox-net=off refuses", r.stderr)

    def test_bad_value(self):
        script = self.script("pdb.py", text=SCRIPT % "pass")
        r = self.run_nbdkit("-f", "-U", os.path.join(self.tmp, "s"), script=script,
                            params=["pdb=maybe"])
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("pdb=maybe: expected a boolean (1/0, true/false, yes/no, on/off)",
                      r.stderr)


if __name__ == "__main__":
    unittest.main()
