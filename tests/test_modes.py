# nbdkit's modes: -f, daemon, -s, --run with -U -, --exit-with-parent, and process lifetime:
# no worker may outlive nbdkit, however nbdkit ends.

import contextlib
import os
import signal
import subprocess

import harness
from harness import PYWORKER, NbdkitTestCase, pattern, pid_alive, wait_until

MiB = 1024 * 1024


def daemon_pattern(seed, size):
    block = bytes((seed + i * 7) % 251 for i in range(4096))
    return (block * (size // 4096 + 1))[:size]


@contextlib.contextmanager
def environment(**values):
    """Temporarily set variables in this process (libnbd's connect_command inherits them)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class ForegroundTest(NbdkitTestCase):

    def test_foreground_serves(self):
        server = self.start(self.script("test-daemon.py"), "seed=3")
        h = server.connect()
        self.assertEqual(h.pread(8192, 4096), daemon_pattern(3, MiB)[4096:12288])
        self.assertWorkerRunning()

    def test_sigterm_leaves_no_worker(self):
        server = self.start(self.example("ramdisk.py"), "size=1M")
        h = server.connect()
        h.pwrite(b"t" * 512, 0)
        self.assertWorkerRunning()
        server.proc.send_signal(signal.SIGTERM)
        # As with any plugin, nbdkit refuses new requests once told to quit and exits when
        # the client goes.
        wait_until(lambda: pid_alive(server.pid) is False or self._refused(h), 10)
        self.close_handles()
        self.assertEqual(server.wait(15), 0, server.stderr())
        self.assertEqual(self.wait_workers_gone(), [], "worker survived nbdkit's SIGTERM")

    def _refused(self, h):
        try:
            h.pread(512, 0)
            return False
        except harness.nbd.Error as e:
            return harness.errno_name(e) == "ESHUTDOWN"

    def test_sigterm_idle(self):
        server = self.start(self.example("ramdisk.py"), "size=1M")
        server.connect().pwrite(b"t" * 512, 0)
        self.close_handles()
        self.assertWorkerRunning()
        self.assertEqual(server.stop(signal.SIGTERM), 0, server.stderr())
        self.assertEqual(self.wait_workers_gone(), [], "worker survived nbdkit's SIGTERM")

    def test_sigkill_leaves_no_worker(self):
        server = self.start(self.example("ramdisk.py"), "size=1M")
        h = server.connect()  # a connection stays open across the kill
        h.pwrite(b"k" * 512, 0)
        self.assertWorkerRunning()
        status = server.stop(signal.SIGKILL)
        self.assertEqual(status, -signal.SIGKILL)
        self.assertEqual(self.wait_workers_gone(), [], "worker survived nbdkit's SIGKILL")

    def test_sigkill_idle_leaves_no_worker(self):
        # No client ever connected. The worker sees EOF at once; a script with no threads and
        # no atexit handlers has nothing to wait for, so it should be gone well within 3 s
        # (scaled for a slow machine).
        server = self.start(self.example("ramdisk.py"), "size=1M")
        self.assertWorkerRunning()
        server.stop(signal.SIGKILL)
        start = harness.time.monotonic()
        self.assertEqual(self.wait_workers_gone(), [], "worker survived nbdkit's SIGKILL")
        self.assertLess(harness.time.monotonic() - start, harness.scaled(3.0),
                        "the idle worker took this long to exit after nbdkit died")

    def test_sigint_while_serving(self):
        # Ctrl-C goes to the whole foreground process group: nbdkit must still shut down
        # cleanly (exit 0) and the script must not see a KeyboardInterrupt in a request.
        server = self.start(self.example("ramdisk.py"), "size=1M")
        h = server.connect()
        h.pwrite(b"c" * 512, 0)
        pids = self.assertWorkerRunning()
        for pid in [server.pid] + pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGINT)
        wait_until(lambda: self._refused(h), 10)
        self.close_handles()
        self.assertEqual(server.wait(15), 0, server.stderr())
        self.assertNotIn("KeyboardInterrupt", server.stderr())
        self.assertEqual(self.wait_workers_gone(), [])

    def test_worker_closes_client_sockets(self):
        # Close every fd but the RPC ones in the worker: a client's socket must not leak into it.
        server = self.start(self.example("ramdisk.py"), "size=1M")
        h = server.connect()
        h.pread(512, 0)
        for pid in self.assertWorkerRunning():
            fds = os.listdir("/proc/%d/fd" % pid)
            targets = []
            for fd in fds:
                with contextlib.suppress(OSError):
                    targets.append(os.readlink("/proc/%d/fd/%s" % (pid, fd)))
            self.assertFalse([t for t in targets if server.sock in t or t.endswith(".sock")],
                             targets)


class DaemonTest(NbdkitTestCase):

    def start_daemon(self, script, *params):
        pidfile = os.path.join(self.tmp, "nbdkit.pid")
        sock = os.path.join(self.tmp, "daemon.sock")
        argv = (["nbdkit", "-P", pidfile, "-U", sock]
                + self.plugin_args(PYWORKER, script, params))
        self.addCleanup(self.kill_pidfile, pidfile)
        proc, err = self.popen(argv, stderr_name="daemon-stderr.txt")
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            self.fail("nbdkit did not go into the background")
        with open(err) as f:
            r = subprocess.CompletedProcess(argv, proc.returncode, "", f.read())
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(wait_until(lambda: harness.pidfile_written(pidfile), 10), "no pidfile")
        self.assertTrue(wait_until(lambda: harness.listening(sock), 10), "no socket")
        with open(pidfile) as f:
            pid = int(f.read())
        return pid, sock

    def connect(self, sock):
        h = harness.nbd.NBD()
        h.connect_unix(sock)
        self.handles.append(h)
        return h

    def test_daemon_serves_state_built_before_fork(self):
        pid, sock = self.start_daemon(self.script("test-daemon.py"), "seed=42")
        self.assertTrue(pid_alive(pid))
        h = self.connect(sock)
        self.assertEqual(h.get_size(), MiB)
        self.assertEqual(h.pread(MiB, 0), daemon_pattern(42, MiB))
        h.pwrite(pattern(4096, 1), 8192)
        self.assertEqual(self.connect(sock).pread(4096, 8192), pattern(4096, 1))
        self.assertWorkerRunning()
        self.close_handles()
        os.kill(pid, signal.SIGTERM)
        self.assertTrue(wait_until(lambda: not pid_alive(pid), 15), "daemon did not exit")
        self.assertEqual(self.wait_workers_gone(), [], "worker survived the daemon")

    def test_daemon_sigkill_leaves_no_worker(self):
        pid, sock = self.start_daemon(self.example("ramdisk.py"), "size=1M")
        self.assertEqual(self.connect(sock).pread(512, 0), bytes(512))
        self.assertWorkerRunning()
        os.kill(pid, signal.SIGKILL)
        self.assertTrue(wait_until(lambda: not pid_alive(pid), 15))
        self.assertEqual(self.wait_workers_gone(), [], "worker survived the daemon's SIGKILL")

    def test_daemon_releases_callers_pipes(self):
        # Like `out=$(nbdkit -P ... 2>&1)`: once the parent has exited, nothing of the daemon
        # (nbdkit itself or its worker) may keep the caller's stdout/stderr open, or the
        # caller never sees EOF. nbdkit's own daemon points its fds 0-2 at /dev/null.
        import select
        pidfile = os.path.join(self.tmp, "nbdkit.pid")
        sock = os.path.join(self.tmp, "daemon.sock")
        self.addCleanup(self.kill_pidfile, pidfile)
        argv = (["nbdkit", "-P", pidfile, "-U", sock]
                + self.plugin_args(PYWORKER, self.example("ramdisk.py"), ["size=1M"]))
        r, w = os.pipe()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=w, stderr=w,
                                env=self.env())
        os.close(w)
        try:
            self.assertEqual(proc.wait(30), 0)
            output = b""
            eof = False
            deadline = harness.time.monotonic() + 10
            while harness.time.monotonic() < deadline:
                ready, _, _ = select.select([r], [], [], 0.2)
                if ready:
                    chunk = os.read(r, 65536)
                    if not chunk:
                        eof = True
                        break
                    output += chunk
            inode = os.fstat(r).st_ino
            holders = []
            for entry in os.listdir("/proc"):
                if not entry.isdigit():
                    continue
                try:
                    for fd in os.listdir("/proc/%s/fd" % entry):
                        if os.readlink("/proc/%s/fd/%s" % (entry, fd)) == "pipe:[%d]" % inode:
                            with open("/proc/%s/cmdline" % entry, "rb") as f:
                                holders.append("%s fd %s: %s" % (
                                    entry, fd, f.read().replace(b"\0", b" ").decode()))
                except OSError:
                    continue
            holders = [x for x in holders if not x.startswith("%d " % os.getpid())]
            self.assertTrue(eof, "the caller's pipe is still held open by:\n"
                            + "\n".join(holders) + "\noutput: " + output.decode())
        finally:
            os.close(r)
        self.assertTrue(wait_until(lambda: harness.listening(sock), 10))
        h = self.connect(sock)
        self.assertEqual(h.get_size(), MiB)

    def test_daemon_relative_paths(self):
        # The daemon chdir()s to /: a relative script path and a relative file= given on the
        # command line must still mean what they meant in the caller's directory.
        script = self.example("file.py")
        disk = os.path.join(self.tmp, "disk.img")
        with open(disk, "wb") as f:
            f.write(pattern(65536, 5))
        pidfile = os.path.join(self.tmp, "rel.pid")
        sock = os.path.join(self.tmp, "rel.sock")
        argv = ["nbdkit", "-P", pidfile, "-U", sock, self.plugin_path(),
                "script=" + os.path.basename(script), "file=disk.img"]
        self.addCleanup(self.kill_pidfile, pidfile)
        errpath = os.path.join(self.tmp, "rel-stderr.txt")
        with open(errpath, "wb") as errf:
            proc = subprocess.Popen(argv, cwd=self.tmp, env=self.env(),
                                    stdout=subprocess.DEVNULL, stderr=errf)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        with open(errpath) as f:
            self.assertEqual(proc.returncode, 0, f.read())
        self.assertTrue(wait_until(lambda: harness.listening(sock), 10))
        self.assertEqual(self.connect(sock).pread(65536, 0), pattern(65536, 5))


class StdioTest(NbdkitTestCase):

    def test_single_mode_with_printing_script(self):
        if harness.REFERENCE:
            self.skipTest("nbdkit's python plugin corrupts -s when the script prints")
        script = self.script("test-printing.py")
        err = os.path.join(self.tmp, "stdio-stderr.txt")
        cmd = ("exec nbdkit -s %s script=%s word=hello-stdio 2>%s"
               % (self.plugin_path(), script, err))
        h = harness.nbd.NBD()
        self.handles.append(h)
        with environment(PYTHONUNBUFFERED="1", PATH=harness.PATH,
                         PYWORKER_TEST_TOKEN=self.token):
            h.connect_command(["/bin/sh", "-c", cmd])
        self.assertEqual(h.get_size(), 64 * 1024)
        self.assertEqual(h.pread(22, 0), b"hello-stdiohello-stdio")
        self.assertEqual(h.pread(11, 5), b"-stdiohello")
        whole = (b"hello-stdio" * 6000)[:64 * 1024]
        self.assertEqual(h.pread(64 * 1024, 0), whole)
        self.assertWorkerRunning()
        self.close_handles()  # libnbd 1.14's Python binding has no close(): shutdown + drop
        del h
        self.assertEqual(self.wait_workers_gone(), [], "worker outlived nbdkit -s")
        with open(err) as f:
            log = f.read()
        # What the script printed is not lost: it went to stderr instead of the socket.
        for text in ("printing at load", "printing in config word hello-stdio",
                     "printing in config_complete", "printing in open", "printing in pread"):
            self.assertIn(text, log)

    def test_socket_activation(self):
        # nbdinfo [ CMD ] starts nbdkit with a listening socket passed as LISTEN_FDS.
        script = self.script("test-printing.py")
        r = self.run_cmd(["nbdinfo", "--size", "--", "[", "nbdkit", self.plugin_path(),
                          "script=" + script, "]"], env=self.env(PYTHONUNBUFFERED="1"))
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        # (nbdkit's python plugin prints the script's print()s here too; pyworker on stderr)
        self.assertEqual(r.stdout.strip().splitlines()[-1], str(64 * 1024))


class RunTest(NbdkitTestCase):

    def test_run_with_unix_minus(self):
        script = self.example("ramdisk.py")
        code = ("import nbd, os; h = nbd.NBD(); h.connect_uri(os.environ[\"uri\"]); "
                "h.pwrite(b\"run-mode!\" * 512, 8192); h.flush(); "
                "print(\"READ\", h.pread(9, 8192 + 9 * 7).decode()); "
                "print(\"SIZE\", h.get_size())")
        r = self.run_nbdkit("-U", "-", script=script, params=["size=2M", "--run",
                            "uri=\"$uri\" /usr/bin/python3 -c '%s'" % code])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("READ run-mode!", r.stdout)
        self.assertIn("SIZE %d" % (2 * MiB), r.stdout)

    def test_run_exit_status_propagates(self):
        r = self.run_nbdkit("-U", "-", script=self.example("ramdisk.py"),
                            params=["size=1M", "--run", "nbdinfo --size \"$uri\"; exit 3"])
        self.assertEqual(r.returncode, 3, r.stderr)
        self.assertEqual(r.stdout.strip(), str(MiB))

    def test_run_nbdcopy_pipeline(self):
        data = pattern(MiB, 6)
        src = os.path.join(self.tmp, "in.img")
        dst = os.path.join(self.tmp, "out.img")
        with open(src, "wb") as f:
            f.write(data)
        r = self.run_nbdkit("-U", "-", script=self.example("ramdisk.py"), params=[
            "size=1M", "--run", "nbdcopy %s \"$uri\" && nbdcopy \"$uri\" %s" % (src, dst)])
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(dst, "rb") as f:
            self.assertEqual(f.read(), data)


class ExitWithParentTest(NbdkitTestCase):

    PARENT = ("import subprocess, sys, time\n"
              "p = subprocess.Popen(sys.argv[1:])\n"
              "print(p.pid, flush=True)\n"
              "time.sleep(300)\n")

    def test_exit_with_parent(self):
        sock = os.path.join(self.tmp, "ewp.sock")
        argv = (["/usr/bin/python3", "-c", self.PARENT, "nbdkit", "--exit-with-parent",
                 "-U", sock] + self.plugin_args(PYWORKER, self.example("ramdisk.py"),
                                                ["size=1M"]))
        parent, err = self.popen(argv, stdout=subprocess.PIPE, stderr_name="ewp.txt")
        self.extra_pids.append(parent.pid)
        nbdkit_pid = int(parent.stdout.readline())
        parent.stdout.close()
        self.extra_pids.append(nbdkit_pid)
        if not wait_until(lambda: harness.listening(sock), 30):
            with open(err) as f:
                self.fail("nbdkit did not start: " + f.read())
        h = harness.nbd.NBD()
        h.connect_unix(sock)
        self.handles.append(h)
        h.pwrite(b"p" * 512, 0)
        self.assertEqual(h.pread(512, 0), b"p" * 512)
        self.assertWorkerRunning()
        self.close_handles()
        parent.kill()
        parent.wait()
        self.assertTrue(wait_until(lambda: not pid_alive(nbdkit_pid), 15),
                        "nbdkit outlived its parent")
        self.assertEqual(self.wait_workers_gone(), [], "worker outlived nbdkit")


class PrivilegeTest(NbdkitTestCase):
    """-u/-g: nbdkit drops privileges after binding its socket; in-process, the script's
    callbacks then run as that user. The worker must not keep running them as root."""

    SCRIPT = ("import os\nAPI_VERSION = 2\n"
              "def open(readonly): return 1\n"
              "def get_size(h): return 64\n"
              "def pread(h, buf, offset, flags):\n"
              "    ids = 'uid=%d gid=%d euid=%d egid=%d' % (os.getuid(), os.getgid(),\n"
              "                                            os.geteuid(), os.getegid())\n"
              "    buf[:] = ids.encode().ljust(64)[offset:offset + len(buf)]\n")

    def test_callbacks_run_as_the_dropped_user(self):
        import grp
        import pwd
        if os.geteuid() != 0:
            self.skipTest("needs root to drop privileges (CI runs as root)")
        uid = pwd.getpwnam("nobody").pw_uid
        gid = grp.getgrnam("nogroup").gr_gid
        os.chmod(self.tmp, 0o755)  # nobody must reach the script (and its directory)
        out = {}
        for plugin in (harness.PYTHON, PYWORKER):
            script = self.script("uid.py", text=self.SCRIPT)
            os.chmod(script, 0o644)
            server = self.start(script, plugin=plugin, args=["-u", "nobody", "-g", "nogroup"])
            out[plugin] = server.connect().pread(64, 0).rstrip()
        expected = ("uid=%d gid=%d euid=%d egid=%d" % (uid, gid, uid, gid)).encode()
        self.assertEqual(out[harness.PYTHON], expected)
        self.assertEqual(out[PYWORKER], expected, "the script ran with other privileges")
        for pid in self.assertWorkerRunning():
            self.assertEqual(os.stat("/proc/%d" % pid).st_uid, uid, "worker not running as nobody")


class LeakCheckSelfTest(NbdkitTestCase):
    """The worker-leak check in teardown must be able to see a leak: a process that looks
    like this test's worker (argv[0] and token) is found, and another test's is not."""

    def test_leak_check_sees_a_worker(self):
        # bash's exec -a gives the fake the worker's name as argv[0]; like a worker, it leads
        # its own process group (what a script forks from a worker does not: not a worker)
        fake = subprocess.Popen("exec -a %s /usr/bin/python3 -c 'import time; time.sleep(30)' "
                                "-- ramdisk-%s.py" % (harness.WORKER_NAME, self.token),
                                shell=True, executable="/bin/bash", process_group=0)
        try:
            self.assertEqual(wait_until(lambda: harness.worker_pids(self.token), 5),
                             [fake.pid])
            self.assertEqual(harness.worker_pids("t000000000000"), [])
            self.assertEqual(self.wait_workers_gone(timeout=0.2), [fake.pid])
        finally:
            fake.kill()
            fake.wait()
        self.assertEqual(self.wait_workers_gone(), [])


class DumpPluginTest(NbdkitTestCase):

    def test_dump_plugin(self):
        text = ("import nbdkit\nAPI_VERSION = 2\n"
                "def thread_model(): return nbdkit.THREAD_MODEL_SERIALIZE_REQUESTS\n"
                "def dump_plugin(): print('script_says=hello')\n"
                "def open(readonly): return 1\n"
                "def get_size(h): return 1\n"
                "def pread(h, buf, offset, flags): pass\n")
        script = self.script("dump.py", text=text)
        r = self.run_nbdkit(self.plugin_path(), "script=" + script, "--dump-plugin")
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = r.stdout.splitlines()
        self.assertIn("thread_model=serialize_requests", lines)
        self.assertIn("nbdkit_python_maximum_api_version=2", lines)
        self.assertIn("python_pep_384_abi_version=3", lines)
        self.assertTrue([l for l in lines if l.startswith("python_version=3.")], lines)
        # nbdkit's python plugin prints the script's lines wherever stdio buffering puts them;
        # pyworker prints them after its own: only ask that they are there, once.
        self.assertEqual(lines.count("script_says=hello"), 1, lines)
        self.assertIn("has_pread=1", lines)


if __name__ == "__main__":
    harness.main()
