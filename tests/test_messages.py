"""Messages that say what the user did and what happened (issue 20, items 4 and 5): a
reload-trigger= in a directory that does not exist is refused at start-up, naming key and value,
in the foreground and as a daemon; -s over pipes (as over ssh) logs no peername errors; a bare
word after the script is refused as nbdkit python refuses it; os.abort() in config() is reported
as config() losing the worker, with its pid, signal and the key=value; a shutdown with a stalled
call logs what pyworker did, not an error from its own watch.
"""

import os
import re
import signal
import socket
import subprocess
import threading
import time

import harness
from harness import NbdkitTestCase, nbd, pid_alive, wait_until


class ReloadTriggerDirectoryTest(NbdkitTestCase):

    def expected(self, trigger):
        return ("reload-trigger=%s: the directory %s does not exist (No such file or directory)"
                % (trigger, os.path.dirname(trigger)))

    def test_refused_at_start_up_in_the_foreground(self):
        if harness.REFERENCE:
            self.skipTest("reload-trigger= is pyworker's")
        trigger = os.path.join(self.tmp, "missing", "trigger")
        sock = os.path.join(self.tmp, "f.sock")
        r = self.run_nbdkit("-f", "-U", sock, script=self.example("ramdisk.py"),
                            params=["reload-trigger=" + trigger])
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn(self.expected(trigger), r.stderr)
        self.assertNotIn("inotify", r.stderr)
        self.assertFalse(os.path.exists(sock))

    def test_refused_at_start_up_as_a_daemon(self):
        # Before: nbdkit exited 0, wrote its pidfile and socket, and the daemon died silently.
        if harness.REFERENCE:
            self.skipTest("reload-trigger= is pyworker's")
        trigger = "missing/trigger"  # relative: to nbdkit's directory at start-up (self.tmp)
        pidfile = os.path.join(self.tmp, "nbdkit.pid")
        sock = os.path.join(self.tmp, "d.sock")
        self.addCleanup(self.kill_pidfile, pidfile)
        r = self.run_nbdkit("-P", pidfile, "-U", sock, script=self.example("ramdisk.py"),
                            params=["reload-trigger=" + trigger])
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn(self.expected(trigger), r.stderr)
        self.assertFalse(os.path.exists(pidfile))
        self.assertFalse(os.path.exists(sock))


class BareWordTest(NbdkitTestCase):

    def test_bare_word_after_the_script_as_nbdkit_python(self):
        script = self.example("ramdisk.py")
        for plugin in (harness.PYTHON, harness.PYWORKER):
            r = self.run_nbdkit("-U", "-", self.plugin_path(plugin), script, "size=1M", "foo",
                                "--run", "nbdinfo --size $uri")
            self.assertEqual(r.returncode, 1, (plugin, r.stderr))
            self.assertIn("expecting key=value on the command line but got: foo", r.stderr)
            self.assertNotIn("more than once", r.stderr)
        # The first bare word is still the script.
        r = self.run_nbdkit("-U", "-", self.plugin_path(), script, "size=1M",
                            "--run", "nbdinfo --size $uri")
        self.assertEqual((r.returncode, r.stdout.strip()), (0, "1048576"), r.stderr)


class PipesTest(NbdkitTestCase):

    def serve_over_pipes(self, plugin):
        """nbdkit -s with pipes for stdin and stdout (as ssh gives it), relayed to a socket
        for the nbd module: a handshake and a read. Returns nbdkit's stderr."""
        argv = ["nbdkit", "-s", self.plugin_path(plugin), self.example("ramdisk.py"), "size=1M"]
        proc, stderr_path = self.popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       stderr_name="pipes-%s.txt" % plugin)
        ours, client = socket.socketpair()

        def to_nbdkit():
            while data := ours.recv(65536):
                proc.stdin.write(data)
                proc.stdin.flush()
            proc.stdin.close()

        def from_nbdkit():
            while data := os.read(proc.stdout.fileno(), 65536):
                ours.sendall(data)
            ours.shutdown(socket.SHUT_WR)

        relays = [threading.Thread(target=f, daemon=True) for f in (to_nbdkit, from_nbdkit)]
        for t in relays:
            t.start()
        try:
            h = nbd.NBD()
            h.connect_socket(client.detach())  # libnbd owns it from now on
            h.pwrite(b"x" * 512, 512)
            self.assertEqual(h.pread(1024, 0), bytes(512) + b"x" * 512)
            h.shutdown()
            self.assertEqual(proc.wait(30), 0)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
            ours.close()
            proc.stdout.close()
        with open(stderr_path) as f:
            return f.read()

    def test_no_peername_errors_under_s_over_pipes(self):
        self.assertEqual(self.serve_over_pipes(harness.PYTHON), "")
        log = self.serve_over_pipes(harness.PYWORKER)
        self.assertNotIn("peername", log)
        self.assertNotIn("error", log)


class AbortInConfigTest(NbdkitTestCase):

    SCRIPT = """\
import os

def config(key, value):
    if key == "abort":  # value: where to write the worker's pid first
        # (open is the script's callback here: os.open for the pid file)
        fd = os.open(value, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        os.abort()

def get_size(h):
    return 1048576

def open(readonly):
    return 1

def pread(h, buf, offset, flags):
    buf[:] = bytes(len(buf))
"""

    def test_abort_in_config_names_config_the_pid_the_signal_and_the_parameter(self):
        # Before: "config_complete: lost the worker process (pid -1)".
        if harness.REFERENCE:
            self.skipTest("in-process, os.abort() kills nbdkit itself")
        script = self.script("messages-abort-in-config.py", self.SCRIPT)
        sock = os.path.join(self.tmp, "abort.sock")
        pidfile = os.path.join(self.tmp, "aborted-worker.pid")
        # Fails, and does not hang: run_nbdkit fails the test on its timeout.
        r = self.run_nbdkit("-f", "-U", sock, script=script,
                            params=["size=1M", "abort=" + pidfile], timeout=harness.scaled(30))
        self.assertEqual(r.returncode, 1, r.stderr)
        with open(pidfile) as f:
            pid = int(f.read())  # the worker that ran config() and aborted
        found = re.search(r"pyworker: config: lost the worker process \(pid (\d+), killed by "
                          r"SIGABRT(?: \(core dumped\))?\) while the script's config\(\) ran "
                          r"with abort=%s$" % re.escape(pidfile), r.stderr, re.M)
        self.assertIsNotNone(found, r.stderr)
        self.assertEqual(int(found.group(1)), pid, r.stderr)
        self.assertNotIn("pid -1", r.stderr)
        self.assertNotIn("config_complete", r.stderr)
        self.assertFalse(os.path.exists(sock))


class StalledShutdownTest(NbdkitTestCase):

    def test_shutdown_with_a_stalled_call_says_what_pyworker_did(self):
        if harness.REFERENCE:
            self.skipTest("nbdkit python waits for the stalled call for ever")
        server = self.start(self.script("messages-hang.py"))
        h = server.connect()
        h.aio_pread(nbd.Buffer(512), 0)
        time.sleep(2.5)  # stalled: the watch looks once a request is a second old
        self.assertEqual(server.stop(timeout=20), 0)
        log = server.stderr()
        self.assertNotIn("aborting sleep", log)
        self.assertRegex(log, r"pyworker: nbdkit is shutting down but worker process \d+ has "
                              r"not finished its requests: killing it")


if __name__ == "__main__":
    harness.main()
