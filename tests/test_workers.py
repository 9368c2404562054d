"""workers=N: N worker processes, each a full interpreter configured the same way; connections
are spread across them, a crash in one leaves the others serving, and global state is per
worker (the documented price of using several cores)."""

import os
import signal
import threading
import unittest

import harness
from harness import NbdkitTestCase, wait_until


def report(h):
    pid, keys, writes = bytes(h.pread(512, 0)).rstrip(b"\0").decode().split(";")
    return int(pid), keys, int(writes)


def cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def running(pid):
    """Whether any thread of `pid` is running or runnable (the script runs on pool threads)."""
    for task in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/stat" % (pid, task)) as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "R":
                    return True
        except OSError:
            pass
    return False


class WorkersTest(NbdkitTestCase):

    def test_connections_are_spread_round_robin(self):
        server = self.start(self.script("workers-state.py"), "workers=3", "a=1", "b=2")
        pids = [report(server.connect())[0] for _ in range(6)]
        self.assertEqual(len(set(pids)), 3, pids)
        self.assertEqual(pids[:3], pids[3:], "not round-robin: %s" % pids)
        self.assertEqual(sorted(self.assertWorkerRunning()), sorted(set(pids)))

    def test_every_worker_is_configured_the_same(self):
        server = self.start(self.script("workers-state.py"), "workers=2", "x=1", "y=two")
        for _ in range(2):
            self.assertEqual(report(server.connect())[1], "x=1,y=two")

    def test_global_state_is_per_worker(self):
        server = self.start(self.script("workers-state.py"), "workers=2")
        a, b = server.connect(), server.connect()
        a.pwrite(b"w" * 512, 0)
        a.pwrite(b"w" * 512, 0)
        self.assertEqual(report(a)[2], 2)
        self.assertEqual(report(b)[2], 0, "the two connections share one interpreter")
        self.assertNotEqual(report(a)[0], report(b)[0])

    def test_gil_bound_reads_run_in_both_workers_at_once(self):
        # Two connections spinning in pure Python: with workers=2 both processes are running
        # at the same moment (sampled from /proc, not timed), and both burn CPU.
        server = self.start(self.script("workers-state.py"), "workers=2")
        handles = [server.connect(), server.connect()]
        pids = [report(h)[0] for h in handles]
        before = [cpu_ticks(p) for p in pids]
        threads = [threading.Thread(target=lambda h=h: [h.pread(512, 1024 * 1024)
                                                          for _ in range(3)])
                   for h in handles]
        for t in threads:
            t.start()
        both_running = 0
        while any(t.is_alive() for t in threads):
            if all(running(p) for p in pids):
                both_running += 1
        for t in threads:
            t.join(120)
        spent = [cpu_ticks(p) - b for p, b in zip(pids, before)]
        self.assertTrue(all(s > 10 for s in spent), "CPU ticks per worker: %s" % spent)
        self.assertGreater(both_running, 0, "the two workers never ran at the same time")

    def test_a_crash_in_one_worker_leaves_the_others_serving(self):
        server = self.start(self.script("workers-state.py"), "workers=2")
        a, b = server.connect(), server.connect()
        pid_a, pid_b = report(a)[0], report(b)[0]
        os.kill(pid_a, signal.SIGKILL)
        self.assertNbdError("EIO", a.pread, 512, 0)
        self.assertEqual(report(b)[0], pid_b, "the other worker was disturbed")
        self.assertTrue(wait_until(lambda: "killed by SIGKILL" in server.stderr(), 10))
        # The dead slot gets a new worker; the live one keeps its own.
        new_pids = {report(server.connect())[0] for _ in range(2)}
        self.assertIn(pid_b, new_pids)
        self.assertNotIn(pid_a, new_pids)
        self.assertEqual(len(new_pids), 2)

    def test_daemon_mode(self):
        pidfile = os.path.join(self.tmp, "nbdkit.pid")
        sock = os.path.join(self.tmp, "d.sock")
        r = self.run_nbdkit("-P", pidfile, "-U", sock, script=self.script("workers-state.py"),
                            params=["workers=2"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(wait_until(lambda: harness.pidfile_written(pidfile), 10))
        with open(pidfile) as f:
            self.extra_pids.append(int(f.read()))
        pids = set()
        for _ in range(2):
            h = harness.nbd.NBD()
            h.connect_unix(sock)
            pids.add(report(h)[0])
            h.shutdown()
        self.assertEqual(len(pids), 2)

    def test_bad_values(self):
        script = self.script("workers-state.py")
        for value, message in [("0", "workers=0: expected 1 to 64"),
                               ("65", "workers=65: expected 1 to 64"),
                               ("two", "workers=two: expected a whole number")]:
            r = self.run_nbdkit("-f", "-U", os.path.join(self.tmp, "s"), script=script,
                                params=["workers=" + value])
            self.assertNotEqual(r.returncode, 0)
            self.assertIn(message, r.stderr)
            self.assertEqual(self.wait_workers_gone(), [])


if __name__ == "__main__":
    unittest.main()
