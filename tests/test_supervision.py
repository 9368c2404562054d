"""Crash isolation and supervision: a worker that dies, hangs or bloats never takes nbdkit down.

Each test makes the script fail in one way (tests/scripts/supervision-faults.py), then checks
with a real client that: the request in flight failed with EIO (and did not hang), nbdkit is
still alive, the log says what happened, and a fresh connection is served by a new worker that
was configured with the same keys in the same order.
"""

import os
import signal
import threading
import time
import unittest

import harness
from harness import NbdkitTestCase, pid_alive, wait_until

FAULT_OFFSET = 65536
DEADLINE = 30  # seconds: far above any expected failure time, far below a hang


def call_with_deadline(test, func, *args):
    """Runs func(*args) in a thread; fails the test if it has not returned within DEADLINE.
    Returns ("ok", value) or ("error", exception)."""
    outcome = []

    def run():
        try:
            outcome.append(("ok", func(*args)))
        except Exception as e:  # the nbd.Error we expect, or anything else to report
            outcome.append(("error", e))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(DEADLINE)
    test.assertFalse(thread.is_alive(), "request still hanging after %ss" % DEADLINE)
    return outcome[0]


def served_by(h):
    """(config keys, worker pid) as the faults script reports them in every read."""
    text = bytes(h.pread(512, 0)).rstrip(b"\0").decode()
    keys, pid = text.split(";pid=")
    return keys, int(pid)


class WorkerDeathTest(NbdkitTestCase):

    def check_fault(self, fault, how, *extra):
        script = self.script("supervision-faults.py")
        server = self.start(script, "fault=" + fault, "b=2", "a=1", *extra)
        h = server.connect()
        keys, first_pid = served_by(h)
        self.assertEqual(keys, "fault=%s,b=2,a=1" % fault)

        kind, result = call_with_deadline(self, h.pread, 512, FAULT_OFFSET)
        self.assertEqual(kind, "error", "the faulting read succeeded")
        self.assertEqual(harness.errno_name(result), "EIO", str(result))
        self.assertIsNone(server.proc.poll(), "nbdkit died with its worker")

        # The log names the worker, how it ended and the request that was lost.
        # (The request's error and the RPC thread's report of the death come in either order.)
        self.assertTrue(wait_until(lambda: how in server.stderr() and
                                   "worker process %d" % first_pid in server.stderr(), 10),
                        "no %r for worker process %d in the log:\n%s"
                        % (how, first_pid, server.stderr()))
        self.assertIn("pread", server.stderr())

        # The old connection's handle died with its worker: it keeps failing, cleanly.
        kind, result = call_with_deadline(self, h.pread, 512, 0)
        self.assertEqual(kind, "error")

        # A new connection gets a new worker, configured with the same keys in the same order.
        time.sleep(1)
        h2 = server.connect()
        keys2, second_pid = served_by(h2)
        self.assertEqual(keys2, keys)
        self.assertNotEqual(second_pid, first_pid)
        self.assertFalse(pid_alive(first_pid), "the dead worker was not reaped")
        self.close_handles()
        self.assertEqual(server.stop(), 0, server.stderr())
        return server

    def test_segfault_in_c_extension(self):
        server = self.check_fault("segv", "killed by SIGSEGV")
        # faulthandler in the worker: the log shows where the script was.
        self.assertIn("Fatal Python error: Segmentation fault", server.stderr())
        self.assertRegex(server.stderr(), r'File ".*supervision-faults-t\w+\.py", line \d+ in fail_now')

    def test_abort(self):
        self.check_fault("abort", "killed by SIGABRT")

    def test_os_exit(self):
        self.check_fault("exit", "exited with status 3")

    def test_killed_from_inside(self):
        self.check_fault("sigkill-self", "killed by SIGKILL")

    # timeout= also limits each step of the replacement's bring-up: not below 2 s for a loaded
    # machine.
    def test_hung_callback_killed_after_timeout(self):
        server = self.check_fault("hang", "no reply within timeout=2 seconds", "timeout=2")
        self.assertIn("killed by SIGKILL", server.stderr())

    def test_sleeping_callback_killed_after_timeout(self):
        self.check_fault("sleep", "no reply within timeout=3 seconds", "timeout=3")

    def test_sigkill_from_outside_fails_the_request_in_flight(self):
        script = self.script("supervision-faults.py")
        server = self.start(script, "fault=sleep")
        h = server.connect()
        _, pid = served_by(h)
        outcome = []
        reader = threading.Thread(
            target=lambda: outcome.append(call_with_deadline(self, h.pread, 512, FAULT_OFFSET)),
            daemon=True)
        reader.start()
        time.sleep(0.5)  # the read is now inside the script's sleep
        os.kill(pid, signal.SIGKILL)
        reader.join(DEADLINE + 5)
        self.assertEqual(outcome[0][0], "error")
        self.assertEqual(harness.errno_name(outcome[0][1]), "EIO")
        self.assertTrue(wait_until(lambda: "killed by SIGKILL" in server.stderr(), 10),
                        server.stderr())
        _, new_pid = served_by(server.connect())
        self.assertNotEqual(new_pid, pid)
        self.assertIsNone(server.proc.poll())

    def test_a_connection_right_after_a_death_is_served(self):
        # No pause between the kill and the next connection: the plugin may not have noticed
        # the death yet, and must still give the new connection a live worker.
        script = self.script("supervision-faults.py")
        server = self.start(script)
        for _ in range(5):
            _, pid = served_by(server.connect())
            os.kill(pid, signal.SIGKILL)
        self.assertNotEqual(served_by(server.connect())[1], pid)

    def test_sys_exit_in_a_callback_is_an_error_not_an_exit(self):
        # As in-process: SystemExit is an exception like any other; the worker lives on.
        script = self.script("supervision-faults.py")
        server = self.start(script, "fault=sys-exit")
        h = server.connect()
        _, pid = served_by(h)
        self.assertNbdError("EIO", h.pread, 512, FAULT_OFFSET)
        self.assertIn("SystemExit", server.stderr())
        self.assertEqual(served_by(h)[1], pid)

    @unittest.skipIf(harness.ASAN, harness.NO_RLIMIT_AS)
    def test_memory_limit_is_a_memory_error_for_the_script(self):
        script = self.script("supervision-faults.py")
        server = self.start(script, "fault=memory", "memory=512M")
        h = server.connect()
        _, pid = served_by(h)
        kind, result = call_with_deadline(self, h.pread, 512, FAULT_OFFSET)
        self.assertEqual(kind, "error")
        self.assertEqual(harness.errno_name(result), "EIO")
        self.assertIn("MemoryError", server.stderr())
        self.assertIsNone(server.proc.poll())
        # The script's MemoryError freed what it had taken: the same worker serves on.
        self.assertEqual(served_by(server.connect())[1], pid)

    def test_restart_storm_is_refused_then_recovers(self):
        script = self.script("supervision-faults.py")
        # A window far longer than the deaths take on a loaded machine.
        server = self.start(script, "fault=segv", "max-restarts=1", "restart-window=10")
        began = time.monotonic()  # every death is noticed after this
        for _ in range(2):  # the first worker and one replacement die
            h = server.connect()
            call_with_deadline(self, h.pread, 512, FAULT_OFFSET)
            wait_until(lambda: False, 0.3)
        # A third worker would exceed max-restarts=1 within restart-window=10.
        with self.assertRaises(harness.nbd.Error):
            server.connect()
        self.assertIn("workers died within 10 seconds", server.stderr())
        self.assertIsNone(server.proc.poll())

        # Once the window has passed, new connections are served again; not before.
        def served():
            try:
                return served_by(server.connect())
            except harness.nbd.Error:
                return None
        result = wait_until(served, 30, interval=0.5)
        self.assertTrue(result, server.stderr())
        self.assertGreater(time.monotonic() - began, 10)
        self.assertTrue(result[0].startswith("fault=segv"))


CLIENT = r"""
import nbd, os, sys, time
uri = sys.argv[1]
h = nbd.NBD(); h.connect_uri(uri)
first = bytes(h.pread(512, 0)).rstrip(b"\0").decode()
try:
    h.pread(512, %d)
    print("fault read succeeded")
    sys.exit(1)
except nbd.Error as e:
    print("fault read:", e.errnum == __import__("errno").EIO)
time.sleep(0.5)
h2 = nbd.NBD(); h2.connect_uri(uri)
second = bytes(h2.pread(512, 0)).rstrip(b"\0").decode()
print("same keys:", first.split(";")[0] == second.split(";")[0])
print("new worker:", first.split(";")[1] != second.split(";")[1])
""" % FAULT_OFFSET


def zombie_children(parent):
    """Children of `parent` that died but were never reaped."""
    return [p for p in harness.child_pids(parent, include_zombies=True)
            if p not in harness.child_pids(parent)]


class CrashInEveryModeTest(NbdkitTestCase):
    """A worker crash in each way nbdkit runs: the request fails, nbdkit serves on."""

    def test_run_mode(self):
        script = self.script("supervision-faults.py")
        client = os.path.join(self.tmp, "client.py")
        with open(client, "w") as f:
            f.write(CLIENT)
        r = self.run_nbdkit("-U", "-", script=script,
                            params=["fault=segv", "--run",
                                    "/usr/bin/python3 %s \"$uri\"" % client])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("fault read: True", r.stdout)
        self.assertIn("same keys: True", r.stdout)
        self.assertIn("new worker: True", r.stdout)
        self.assertIn("lost the worker process", r.stderr)

    def test_daemon_mode(self):
        script = self.script("supervision-faults.py")
        pidfile = os.path.join(self.tmp, "nbdkit.pid")
        sock = os.path.join(self.tmp, "daemon.sock")
        r = self.run_nbdkit("-P", pidfile, "-U", sock, script=script, params=["fault=segv"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(wait_until(lambda: harness.pidfile_written(pidfile), 10))
        with open(pidfile) as f:
            pid = int(f.read())
        self.extra_pids.append(pid)
        client = os.path.join(self.tmp, "client.py")
        with open(client, "w") as f:
            f.write(CLIENT)
        out = self.run_cmd(["/usr/bin/python3", client, "nbd+unix:///?socket=" + sock],
                           check=True).stdout
        self.assertIn("fault read: True", out)
        self.assertIn("same keys: True", out)
        self.assertIn("new worker: True", out)
        self.assertTrue(pid_alive(pid), "the daemon died with its worker")
        # The replacement crashes too: it is the daemon's own child and must be reaped.
        h = harness.nbd.NBD()
        h.connect_unix(sock)
        self.assertNbdError("EIO", h.pread, 512, FAULT_OFFSET)
        h.shutdown()
        self.assertTrue(wait_until(lambda: not zombie_children(pid), 10),
                        "unreaped: %s" % zombie_children(pid))
        os.kill(pid, signal.SIGTERM)
        self.assertTrue(wait_until(lambda: not pid_alive(pid), 15))
        self.assertEqual(self.wait_workers_gone(), [])

    def test_single_connection_mode(self):
        # -s: one connection on stdin/stdout. Its worker dies: the request fails, the
        # connection's later requests fail cleanly, and nbdkit exits when the client goes.
        script = self.script("supervision-faults.py")
        h = harness.nbd.NBD()
        h.connect_command(["nbdkit", "-s", harness.PLUGIN, "script=" + script, "fault=segv"])
        self.assertIn(b"fault=segv", bytes(h.pread(512, 0)))
        self.assertNbdError("EIO", h.pread, 512, FAULT_OFFSET)
        self.assertNbdError("EIO", h.pread, 512, 0)
        h.shutdown()
        del h
        self.assertEqual(self.wait_workers_gone(), [])


class ShutdownTest(NbdkitTestCase):

    def test_sigterm_with_a_hung_callback_still_exits(self):
        # No timeout=: nothing is killed while nbdkit serves, but a shutdown must not wait
        # forever for a callback that never returns.
        script = self.script("supervision-faults.py")
        server = self.start(script, "fault=hang")
        h = server.connect()
        h.aio_pread(harness.nbd.Buffer(512), FAULT_OFFSET)
        time.sleep(1)
        self.assertIsNone(server.proc.poll())
        server.proc.send_signal(signal.SIGTERM)
        # nbdkit waits for its clients to go; this one hangs up with its read still in flight
        # (h.shutdown() would wait for the reply).
        self.handles.remove(h)
        del h
        status = server.wait(DEADLINE)
        self.assertEqual(status, 0, "nbdkit did not exit by itself after SIGTERM:\n"
                         + server.stderr())
        self.assertIn("has not finished its requests: killing it", server.stderr())
        self.assertEqual(self.wait_workers_gone(), [])

    def test_idle_sigterm_kills_nothing_and_runs_cleanup(self):
        with open(os.path.join(harness.SCRIPTS, "supervision-faults.py")) as f:
            text = f.read()
        script = self.script("supervision-faults.py", text=text + """
def cleanup():
    print("cleanup ran", flush=True)
""")
        server = self.start(script)
        h = server.connect()
        for _ in range(300):  # busy right up to the signal: still nothing to kill or log
            served_by(h)
        self.close_handles()
        self.assertEqual(server.stop(signal.SIGTERM, timeout=DEADLINE), 0)
        self.assertIn("cleanup ran", server.stderr())
        self.assertNotIn("killing it", server.stderr())
        self.assertNotIn("error", server.stderr())


class AcknowledgedWritesTest(NbdkitTestCase):

    def test_flushed_writes_survive_a_crash(self):
        disk = os.path.join(self.tmp, "disk.img")
        with open(disk, "wb") as f:
            f.truncate(1024 * 1024)
        script = self.script("supervision-file.py")
        server = self.start(script, "file=" + disk)
        h = server.connect()
        data = harness.pattern(256 * 1024, 7)
        h.pwrite(data, 4096)
        h.flush()
        h.pwrite(harness.pattern(4096, 8), 512 * 1024, harness.nbd.CMD_FLAG_FUA)
        kind, result = call_with_deadline(self, h.pread, 4096, 1024 * 1024 - 4096)
        self.assertEqual(kind, "error")
        self.assertTrue(wait_until(lambda: "killed by SIGSEGV" in server.stderr(), 10))
        h2 = server.connect()
        self.assertEqual(bytes(h2.pread(len(data), 4096)), data)
        self.assertEqual(bytes(h2.pread(4096, 512 * 1024)), harness.pattern(4096, 8))
        with open(disk, "rb") as f:
            f.seek(4096)
            self.assertEqual(f.read(len(data)), data)


class StrippedWorkerTest(NbdkitTestCase):

    def test_worker_holds_only_its_stdio_pipe_and_sockets(self):
        # After the config phase: stdin /dev/null, stdout+stderr the pipe to the plugin, the
        # serving socket (fd 3), the lane offers (fd 6), one lane (one client reading one
        # block at a time uses one), and the event loop's own anonymous fds; nothing of
        # nbdkit's (its listening and client sockets would be sockets too: hence the count).
        server = self.start(self.script("supervision-faults.py"))
        _, pid = served_by(server.connect())
        fds = {}
        for fd in os.listdir("/proc/%d/fd" % pid):
            fds[int(fd)] = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        self.assertEqual(fds.pop(0), "/dev/null")
        stdout = fds.pop(1)
        self.assertRegex(stdout, r"^pipe:")
        self.assertEqual(fds.pop(2), stdout)
        self.assertRegex(fds.pop(3), r"^socket:")
        self.assertRegex(fds.pop(6), r"^socket:")
        rest = [t for t in fds.values() if not t.startswith("anon_inode:")]
        self.assertEqual(len(rest), 1, "the worker holds more than it should: %s" % fds)
        self.assertRegex(rest[0], r"^socket:")


class UserSwitchTest(NbdkitTestCase):

    def test_worker_follows_nbdkit_user_switch(self):
        if os.geteuid() != 0:
            self.skipTest("needs root to switch user")
        script = self.script("supervision-faults.py")
        os.chmod(self.tmp, 0o755)
        os.chmod(script, 0o644)
        server = self.start(script, args=["-u", "nobody", "-g", "nogroup"])
        _, pid = served_by(server.connect())
        with open("/proc/%d/status" % pid) as f:
            status = f.read()
        import pwd
        nobody = pwd.getpwnam("nobody")
        self.assertRegex(status, r"\nUid:\t%d\t%d\t%d\t%d\n" % ((nobody.pw_uid,) * 4))
        self.assertRegex(status, r"\nGroups:\t%d \n" % nobody.pw_gid)


class ParameterTest(NbdkitTestCase):

    def test_bad_supervision_parameters_name_the_problem(self):
        script = self.script("supervision-faults.py")
        for param, message in [
                ("timeout=soon", "timeout=soon: expected a number of seconds"),
                ("timeout=0", "timeout=0: expected a number of seconds"),
                ("memory=lots", "memory=lots: expected a size"),
                ("memory=1M", "memory=1M: too small for a Python worker"),
                ("max-restarts=-1", "max-restarts=-1: expected a whole number"),
                ("restart-window=0", "restart-window=0: expected a number of seconds")]:
            r = self.run_nbdkit("-f", "-U", os.path.join(self.tmp, "s"), script=script,
                                params=[param])
            self.assertNotEqual(r.returncode, 0, param)
            self.assertIn(message, r.stderr, param)
            self.assertNotIn("fault=", r.stderr)


if __name__ == "__main__":
    unittest.main()
