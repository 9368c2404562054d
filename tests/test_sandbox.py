# sandbox= and worker-user= (issue 19), with real nbdkit and real clients: a file-backed script
# under sandbox=on serves its disk end to end (qemu-img convert in and out) while what it may
# not do (read /etc/shadow, write outside sandbox-allow=, ptrace nbdkit, load a kernel module,
# signal nbdkit, with sandbox-net=off connect to a TCP listener) fails in Python with
# PermissionError, logged with its traceback, and nbdkit serves on with the same worker;
# /proc/WORKER/status shows NoNewPrivs 1 and Seccomp 2; a kernel without Landlock (simulated)
# is refused with sandbox=on and logged with sandbox=best-effort; worker-user=nobody serves a
# file nobody may read and fails cleanly on one it may not; tools/pyworker-debug and SIGUSR2
# still work on a sandboxed worker.

import ctypes
import os
import pwd
import re
import signal
import socket
import unittest

import harness
import test_descendants
from harness import NbdkitTestCase, nbd, pattern, wait_until

NOBODY = pwd.getpwnam("nobody")
TOOL = os.path.join(harness.SOURCE_ROOT, "tools", "pyworker-debug")


def landlock_abi():
    """The kernel's Landlock ABI version (0: none): landlock_create_ruleset(NULL, 0,
    LANDLOCK_CREATE_RULESET_VERSION), system call 444 on x86_64."""
    libc = ctypes.CDLL(None, use_errno=True)
    version = libc.syscall(444, None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    return max(version, 0)


def status_fields(pid):
    """The lines of /proc/PID/status as a dict of their first word after the key."""
    fields = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.split()
    return fields


@unittest.skipIf(harness.REFERENCE, "sandbox= is pyworker's")
@unittest.skipUnless(os.geteuid() == 0, "needs root: worker-user= and the files tried are root's")
class SandboxTest(NbdkitTestCase):

    def setUp(self):
        super().setUp()
        # Served data lives in its own directory, the only one the script may write.
        self.data = os.path.join(self.tmp, "data")
        os.mkdir(self.data)
        self.disk = os.path.join(self.data, "disk.img")
        with open(self.disk, "wb") as f:
            f.write(pattern(4 << 20, seed=19))

    def probe(self, *params, env=None, args=()):
        script = self.script("sandbox-probe.py")
        return self.start(script, "file=" + self.disk, *params, env=env, args=args)

    def sandboxed(self, *params, env=None):
        return self.probe("sandbox=on", "sandbox-allow=" + self.data, *params, env=env)

    def assertRefused(self, server, export, error, text):
        """Connecting with `export` fails (its open() raised); the log has the Python
        traceback ending in `error`: `text`; then another connection is served by the same
        worker."""
        [worker] = self.assertWorkerRunning()
        with self.assertRaises(nbd.Error):
            self.connect_export(server, export)
        self.assertTrue(wait_until(lambda: error in server.stderr(), 10), server.stderr())
        log = server.stderr()
        self.assertRegex(log, r"%s: open: error: Traceback \(most recent call last\):"
                         % re.escape(server.script))
        self.assertRegex(log, r'in try_%s\n' % export)
        self.assertRegex(log, r"%s: .*%s" % (error, re.escape(text)))
        self.assertNotIn("attempt %s succeeded" % export, log)
        # nbdkit keeps serving, on the same worker.
        h = server.connect()
        self.assertEqual(h.pread(4096, 8192), pattern(4 << 20, seed=19)[8192:8192 + 4096])
        self.assertEqual(self.assertWorkerRunning(), [worker], "the worker was replaced")

    def connect_export(self, server, export):
        h = nbd.NBD()
        h.set_export_name(export)
        self.handles.append(h)
        h.connect_unix(server.sock)
        return h

    # --- what a sandboxed script can do ------------------------------------------------------

    def test_file_backed_script_end_to_end(self):
        server = self.sandboxed()
        src = os.path.join(self.tmp, "src.img")
        out = os.path.join(self.tmp, "out.img")
        with open(src, "wb") as f:
            f.write(pattern(4 << 20, seed=7))
        # In: qemu-img writes the whole disk through the script.
        self.run_cmd(["qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", src, server.uri],
                     check=True)
        with open(self.disk, "rb") as f:
            self.assertEqual(f.read(), pattern(4 << 20, seed=7))
        # Out: and reads it back.
        self.run_cmd(["qemu-img", "convert", "-f", "raw", "-O", "raw", server.uri, out],
                     check=True)
        r = self.run_cmd(["qemu-img", "compare", "-f", "raw", "-F", "raw", src, out])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertNotIn("error", server.stderr())

    def test_worker_status_shows_no_new_privs_and_seccomp(self):
        server = self.sandboxed()
        [worker] = self.assertWorkerRunning()
        fields = status_fields(worker)
        self.assertEqual(fields["NoNewPrivs"], ["1"])
        self.assertEqual(fields["Seccomp"], ["2"])  # SECCOMP_MODE_FILTER
        self.assertEqual(fields["Seccomp_filters"], ["1"])
        # nbdkit itself is not sandboxed.
        nbdkit = status_fields(server.pid)
        self.assertEqual(nbdkit["NoNewPrivs"], ["0"])
        self.assertEqual(nbdkit["Seccomp"], ["0"])
        # The script sees the same from inside.
        self.connect_export(server, "status")
        self.assertTrue(wait_until(lambda: "status: " in server.stderr(), 10))
        self.assertRegex(server.stderr(), r"NoNewPrivs:\s+1 \| Seccomp:\s+2")

    def test_replacement_workers_are_sandboxed_too(self):
        server = self.sandboxed()
        [first] = self.assertWorkerRunning()
        os.kill(first, signal.SIGKILL)
        self.assertTrue(wait_until(lambda: first not in harness.worker_pids(self.token), 10))
        h = server.connect()
        self.assertEqual(len(h.pread(512, 0)), 512)
        [second] = self.assertWorkerRunning()
        self.assertNotEqual(first, second)
        fields = status_fields(second)
        self.assertEqual((fields["NoNewPrivs"], fields["Seccomp"]), (["1"], ["2"]))

    def test_programs_run_and_the_network_is_allowed_by_default(self):
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(20)
        self.addCleanup(listener.close)
        server = self.sandboxed("port=%d" % listener.getsockname()[1])
        self.connect_export(server, "connect")
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(20)
            self.assertEqual(conn.recv(100), b"hello from the script\n")
        self.connect_export(server, "exec")
        self.assertTrue(wait_until(lambda: "exec works" in server.stderr(), 10),
                        server.stderr())

    # --- what it cannot ----------------------------------------------------------------------

    def test_reading_etc_shadow_is_refused(self):
        server = self.sandboxed()
        self.assertRefused(server, "shadow", "PermissionError",
                           "[Errno 13] Permission denied: '/etc/shadow'")

    def test_writing_outside_the_allowed_paths_is_refused(self):
        outside = os.path.join(self.tmp, "outside.txt")
        server = self.sandboxed("outside=" + outside)
        self.assertRefused(server, "write", "PermissionError",
                           "[Errno 13] Permission denied: '%s'" % outside)
        self.assertFalse(os.path.exists(outside))

    def test_read_only_allowed_path_cannot_be_written(self):
        readonly = os.path.join(self.tmp, "ro")
        os.mkdir(readonly)
        target = os.path.join(readonly, "x.txt")
        server = self.probe("sandbox=on", "sandbox-allow=" + self.data,
                            "sandbox-allow=%s:ro" % readonly, "outside=" + target)
        self.assertRefused(server, "write", "PermissionError", "Permission denied")
        self.assertFalse(os.path.exists(target))

    def test_ptrace_of_nbdkit_is_refused(self):
        server = self.sandboxed()
        self.assertRefused(server, "ptrace", "PermissionError",
                           "[Errno 1] Operation not permitted")
        self.assertEqual(status_fields(server.pid)["TracerPid"], ["0"])

    def test_loading_a_kernel_module_is_refused(self):
        server = self.sandboxed()
        self.assertRefused(server, "module", "PermissionError",
                           "[Errno 1] Operation not permitted")

    def test_changing_the_mode_of_etc_shadow_is_refused(self):
        # Landlock does not govern a file's mode: the filter refuses chmod by path.
        before = os.stat("/etc/shadow").st_mode
        server = self.sandboxed()
        self.assertRefused(server, "chmod", "PermissionError",
                           "[Errno 1] Operation not permitted: '/etc/shadow'")
        self.assertEqual(os.stat("/etc/shadow").st_mode, before)

    @unittest.skipUnless(landlock_abi() >= 6, "Landlock scopes signals from ABI 6 (Linux 6.12)")
    def test_signalling_nbdkit_is_refused(self):
        server = self.sandboxed()
        self.assertRefused(server, "kill", "PermissionError",
                           "[Errno 1] Operation not permitted")

    def test_sandbox_net_off_refuses_a_tcp_connection(self):
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        self.addCleanup(listener.close)
        server = self.sandboxed("sandbox-net=off", "port=%d" % listener.getsockname()[1])
        self.assertRefused(server, "connect", "PermissionError",
                           "[Errno 1] Operation not permitted")
        listener.settimeout(0)
        with self.assertRaises(BlockingIOError):
            listener.accept()  # nothing ever connected

    # --- kernels without a piece -------------------------------------------------------------

    def test_sandbox_on_refuses_to_start_on_a_kernel_without_a_piece(self):
        # Each missing piece (simulated) named, and no worker started.
        cases = [
            ({"PYWORKER_TEST_LANDLOCK_ABI": "0"},
             "error: sandbox=on: the file-system restriction: this kernel has no Landlock "
             "(simulated by PYWORKER_TEST_LANDLOCK_ABI=0) (sandbox=best-effort runs without "
             "what is missing)"),
            ({"PYWORKER_TEST_LANDLOCK_ABI": "2"},
             "error: sandbox=on: truncation of files outside the allowed paths: this kernel's "
             "Landlock ABI is 2, ABI 3 (Linux 6.2) restricts it"),
            ({"PYWORKER_TEST_NO_SECCOMP": "1"},
             "error: sandbox=on: the system-call filter: this kernel has no seccomp filters"),
        ]
        script = self.script("sandbox-probe.py")
        for simulated, message in cases:
            with self.subTest(simulated=simulated):
                r = self.run_nbdkit("-f", "-U", os.path.join(self.tmp, "s"), script=script,
                                    params=["file=" + self.disk, "sandbox=on"],
                                    env=self.env(**simulated))
                self.assertNotEqual(r.returncode, 0)
                self.assertIn(message, r.stderr)
                self.assertEqual(harness.worker_pids(self.token), [], "a worker was started")

    def test_best_effort_without_landlock_logs_what_it_left_out(self):
        server = self.probe("sandbox=best-effort",
                            env=self.env(PYWORKER_TEST_LANDLOCK_ABI="0"))
        self.assertIn("nbdkit: pyworker: warning: sandbox=best-effort: left out the file-system "
                      "restriction: this kernel has no Landlock", server.stderr())
        [worker] = self.assertWorkerRunning()
        fields = status_fields(worker)
        self.assertEqual((fields["NoNewPrivs"], fields["Seccomp"]), (["1"], ["2"]))
        h = server.connect()
        self.assertEqual(h.pread(512, 0), pattern(4 << 20, seed=19)[:512])
        # The filter is still there without Landlock.
        self.assertRefused(server, "module", "PermissionError",
                           "[Errno 1] Operation not permitted")

    # --- parameters --------------------------------------------------------------------------

    def test_bad_values_are_refused_at_start(self):
        script = self.script("sandbox-probe.py")
        cases = [
            (["sandbox=yes"], "sandbox=yes: expected on, off or best-effort"),
            (["sandbox-allow=" + self.data], "sandbox-allow=%s: needs sandbox=on" % self.data),
            (["sandbox-net=off"], "sandbox-net=off: needs sandbox=on"),
            (["sandbox=on", "sandbox-allow=/no/such/dir"],
             "sandbox-allow=/no/such/dir: No such file or directory"),
            (["sandbox=on", "sandbox-allow=/"],
             "sandbox-allow=/: the whole file system cannot be allowed for writing"),
            (["sandbox=on", "sandbox-net=maybe"], "sandbox-net=maybe: expected a boolean"),
            (["worker-user=nosuch"], "worker-user=nosuch: no such user"),
            (["worker-group=nosuch"], "worker-group=nosuch: no such group"),
        ]
        for params, message in cases:
            with self.subTest(params=params):
                r = self.run_nbdkit("-f", "-U", os.path.join(self.tmp, "s"), script=script,
                                    params=["file=" + self.disk] + params)
                self.assertNotEqual(r.returncode, 0)
                self.assertIn("error: " + message, r.stderr)
        self.assertEqual(harness.worker_pids(self.token), [])

    # --- worker-user= ------------------------------------------------------------------------

    def nobody_can_reach(self):
        """The temp dir (the script's copy, the disk's directory) searchable by nobody."""
        os.chmod(self.tmp, 0o755)
        os.chmod(self.data, 0o755)

    def test_worker_user_serves_a_file_that_user_may_read(self):
        self.nobody_can_reach()
        os.chown(self.disk, NOBODY.pw_uid, NOBODY.pw_gid)
        os.chmod(self.disk, 0o600)  # nobody's alone: root's nbdkit reading it proves nothing
        server = self.probe("worker-user=nobody")
        [worker] = self.assertWorkerRunning()
        fields = status_fields(worker)
        self.assertEqual(fields["Uid"], [str(NOBODY.pw_uid)] * 4)
        self.assertEqual(fields["Gid"], [str(NOBODY.pw_gid)] * 4)
        self.assertEqual(fields["Groups"], [str(NOBODY.pw_gid)])
        self.assertEqual(status_fields(server.pid)["Uid"][0], "0")  # nbdkit keeps its own
        h = server.connect()
        h.pwrite(b"\xab" * 4096, 4096)
        self.assertEqual(h.pread(4096, 4096), b"\xab" * 4096)
        with open(self.disk, "rb") as f:
            f.seek(4096)
            self.assertEqual(f.read(4096), b"\xab" * 4096)

    def test_worker_user_fails_cleanly_on_a_file_that_user_may_not_read(self):
        self.nobody_can_reach()
        os.chmod(self.disk, 0o600)  # root's
        server = self.probe("worker-user=nobody", args=["-r"])
        [worker] = self.assertWorkerRunning()
        with self.assertRaises(nbd.Error):
            server.connect()
        self.assertTrue(wait_until(lambda: "PermissionError" in server.stderr(), 10))
        self.assertIn("PermissionError: [Errno 13] Permission denied: '%s'" % self.disk,
                      server.stderr())
        # nbdkit serves on with the same worker: once the file is readable, it is served.
        os.chmod(self.disk, 0o644)
        h = server.connect()
        self.assertEqual(h.pread(512, 0), pattern(4 << 20, seed=19)[:512])
        self.assertEqual(self.assertWorkerRunning(), [worker])

    def test_worker_user_with_sandbox(self):
        self.nobody_can_reach()
        os.chown(self.disk, NOBODY.pw_uid, NOBODY.pw_gid)
        server = self.sandboxed("worker-user=nobody")
        [worker] = self.assertWorkerRunning()
        fields = status_fields(worker)
        self.assertEqual(fields["Uid"][0], str(NOBODY.pw_uid))
        self.assertEqual((fields["NoNewPrivs"], fields["Seccomp"]), (["1"], ["2"]))
        h = server.connect()
        self.assertEqual(h.pread(512, 0), pattern(4 << 20, seed=19)[:512])
        self.assertRefused(server, "shadow", "PermissionError", "Permission denied")

    def test_sandbox_with_nbdkit_switching_user(self):
        # -u/-g: the worker, started as root, switches user in after_fork, inside its
        # sandbox (setuid is not refused); a replacement is started by nbdkit as nobody.
        self.nobody_can_reach()
        os.chown(self.disk, NOBODY.pw_uid, NOBODY.pw_gid)
        server = self.probe("sandbox=on", "sandbox-allow=" + self.data,
                            args=["-u", "nobody", "-g", "nogroup"])
        h = server.connect()
        self.assertEqual(h.pread(512, 0), pattern(4 << 20, seed=19)[:512])
        [worker] = self.assertWorkerRunning()
        fields = status_fields(worker)
        self.assertEqual(fields["Uid"][0], str(NOBODY.pw_uid))
        self.assertEqual((fields["NoNewPrivs"], fields["Seccomp"]), (["1"], ["2"]))
        self.assertRefused(server, "shadow", "PermissionError", "Permission denied")
        os.kill(worker, signal.SIGKILL)
        self.assertTrue(wait_until(lambda: worker not in harness.worker_pids(self.token), 10))
        h = server.connect()
        self.assertEqual(h.pread(512, 0), pattern(4 << 20, seed=19)[:512])
        [second] = self.assertWorkerRunning()
        fields = status_fields(second)
        self.assertEqual((fields["Uid"][0], fields["Seccomp"]), (str(NOBODY.pw_uid), ["2"]))

    # --- debugging ---------------------------------------------------------------------------

    def test_pyworker_debug_and_sigusr2_on_a_sandboxed_worker(self):
        # gdb runs outside the sandbox and traces the worker: being traced is not refused,
        # only tracing others is.
        server = self.sandboxed()
        [worker] = self.assertWorkerRunning()
        h = server.connect()
        self.assertEqual(len(h.pread(512, 0)), 512)
        r = self.run_cmd([TOOL, "stacks", str(worker)], timeout=90)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("worker %d: %s" % (worker, os.path.basename(server.script)), r.stdout)
        self.assertRegex(r.stdout, r"#\d+ .* in main \(")
        os.kill(worker, signal.SIGUSR2)
        self.assertTrue(wait_until(lambda: "Current thread" in server.stderr()
                                   or "Thread 0x" in server.stderr(), 10), server.stderr())
        self.assertEqual(h.pread(512, 0), pattern(4 << 20, seed=19)[:512])
        self.assertEqual(self.assertWorkerRunning(), [worker])

    def test_debug_wait_on_a_sandboxed_worker(self):
        # The worker waits (reading /proc/self/status) inside its sandbox; gdb attaches from
        # outside and lets it go on.
        marker = os.path.join(self.data, "loaded")
        script = self.script("debug-wait.py", text="""
open(%r, "w").close()   # the script ran (in its sandbox-allow= directory)
API_VERSION = 2
def open(readonly): return 1
def get_size(h): return 4096
def pread(h, buf, offset, flags): buf[:] = b"d" * len(buf)
""" % marker)
        server = self.start(script, "debug-wait=1", "sandbox=on", "sandbox-allow=" + self.data,
                            wait=False)
        self.assertTrue(wait_until(lambda: "waits for a debugger" in server.stderr(), 15),
                        server.stderr())
        pid = int(server.stderr().split("worker process ")[1].split()[0])
        self.assertEqual(status_fields(pid)["Seccomp"], ["2"])  # sandboxed before it waits
        self.assertFalse(os.path.exists(marker))
        self.continue_under_gdb(pid)
        self.assertTrue(wait_until(lambda: harness.listening(server.sock), 30), server.stderr())
        self.assertTrue(os.path.exists(marker))
        self.assertEqual(bytes(server.connect().pread(8, 0)), b"d" * 8)


@unittest.skipIf(harness.REFERENCE, "sandbox= is pyworker's")
class SandboxedDescendantsTest(test_descendants.DescendantsTest):
    """test_descendants.py's tests again, each worker sandboxed: what a script starts (a
    fork, its child, a Popen of /usr/bin/sleep, a setsid() daemon) still ends with its worker
    (the worker reads /proc to find them and signals them: inside its sandbox)."""

    def start_script(self, *params, **kwargs):
        return super().start_script("sandbox=on", "sandbox-allow=" + self.tmp, *params,
                                    **kwargs)


if __name__ == "__main__":
    unittest.main()
