"""A worker that sends replies no correct worker sends: the plugin fails that request with EIO,
kills the worker (the bad connection's later requests fail too), logs why, and the next
connection gets a new, well-behaved worker. nbdkit itself never crashes or serves the bad data.

The liar is tests/evil-worker.c++ (worker=PATH): it starts the real worker and relays every
Cap'n Proto message (RPC connection and lanes) unchanged except the one reply that PYWORKER_EVIL
names, which it corrupts once per test (PYWORKER_EVIL_ONCE)."""

import os
import unittest

import harness
from harness import NbdkitTestCase, wait_until

EVIL = os.environ.get("PYWORKER_EVIL_WORKER",
                      os.path.join(harness.SOURCE_ROOT, "build", "tests",
                                   "nbdkit-pyworker-worker-evil"))


def pid_of(h):
    return int(bytes(h.pread(64, 0)).rstrip(b"\0").decode().split("=")[1])


@unittest.skipIf(harness.REFERENCE, "pyworker's own worker protocol")
@unittest.skipIf(harness.INSTALLED, harness.NEEDS_BUILD_TREE)
class HostileWorkerTest(NbdkitTestCase):

    def start_evil(self, mode):
        self.assertTrue(os.access(EVIL, os.X_OK), "not built: %s" % EVIL)
        env = self.env(PYWORKER_EVIL=mode, PYWORKER_EVIL_REAL=harness.WORKER,
                       PYWORKER_EVIL_ONCE=os.path.join(self.tmp, "evil-done"))
        return self.start(self.script("hostile.py"), "worker=" + EVIL, "max-restarts=50",
                          env=env)

    def assertRejected(self, server, what):
        log = lambda: server.stderr()
        self.assertTrue(wait_until(lambda: "invalid reply from the worker: " + what in log(), 10),
                        log())
        self.assertIn("sent an invalid reply: killing it", log())
        self.assertIsNone(server.proc.poll(), "nbdkit died:\n" + log())

    def assertReplaced(self, server, old_pid=None):
        # The next connection is served by a new worker, which behaves.
        h = wait_until(lambda: self._try_connect(server), 10)
        self.assertTrue(h, "no new connection after the bad reply:\n" + server.stderr())
        pid = pid_of(h)
        if old_pid is not None:
            self.assertNotEqual(pid, old_pid)
            self.assertFalse(harness.pid_alive(old_pid), "the lying worker still runs")
        self.assertEqual(h.get_size(), 1024 * 1024)
        return h

    def _try_connect(self, server):
        try:
            return server.connect()
        except harness.nbd.Error:
            return None

    def check_pread(self, mode, what):
        server = self.start_evil(mode)
        h = server.connect()
        # The first read is corrupted: it fails, and nothing of it reaches the client.
        self.assertNbdError("EIO", h.pread, 512, 4096)
        self.assertRejected(server, what)
        # The lying worker was killed: this connection keeps failing.
        self.assertTrue(wait_until(lambda: self._fails(h), 10))
        h2 = self.assertReplaced(server)
        self.assertEqual(bytes(h2.pread(512, 4096))[:4], b"pid=")

    def _fails(self, h):
        try:
            h.pread(512, 0)
            return False
        except harness.nbd.Error:
            return True

    def test_pread_short(self):
        self.check_pread("pread-short", "pread returned 511 bytes, expected 512")

    def test_pread_long(self):
        self.check_pread("pread-long", "pread returned 513 bytes, expected 512")

    def test_lane_garbage(self):
        self.check_pread("lane-garbage", "malformed lane message")

    def test_lane_hangup(self):
        # The worker is alive but closes the lane instead of answering: what a correct worker
        # does when it has no memory left for a lane (issue 20: honest workers are not killed).
        # That request fails with ENOMEM; the worker serves on.
        server = self.start_evil("lane-hangup")
        h = server.connect()
        [pid] = harness.worker_pids(self.token)
        self.assertNbdError("ENOMEM", h.pread, 512, 4096)  # the first read: its lane closed
        self.assertIn("closed the request's lane without answering (out of memory for it? "
                      "memory= may be too small)", server.stderr())
        self.assertNotIn("invalid reply", server.stderr())
        # The same worker (the evil relay, whose script runs in a child) serves on, this
        # connection too.
        self.assertEqual(pid_of(h), pid_of(server.connect()))
        self.assertEqual(harness.worker_pids(self.token), [pid])

    def check_connect(self, mode, what, export=""):
        server = self.start_evil(mode)
        with self.assertRaises(harness.nbd.Error):
            server.connect(export=export)
        self.assertRejected(server, what)
        self.assertReplaced(server)

    def test_query_out_of_range(self):
        # hostile.py has can_extents and no other can_*: the one question asked on a lane.
        self.check_connect("query-range", "can_extents answered 7")

    def test_fixed_answer_out_of_range(self):
        # The answers after_fork gives for the callbacks the script lacks are checked as any.
        self.check_connect("fixed-answer-range", "can_write answered 7")

    def test_negative_size(self):
        self.check_connect("size-negative", "get_size answered -1")

    def test_default_export_not_utf8(self):
        # The client asks for the default export ("") so the plugin asks the worker its name.
        self.check_connect("default-export-utf8", "default export name is not valid UTF-8")

    def test_list_exports_not_utf8(self):
        server = self.start_evil("list-exports-utf8")
        r = self.run_cmd(["nbdinfo", "--list", server.uri])
        self.assertNotEqual(r.returncode, 0, r.stdout)
        self.assertRejected(server, "export name is not valid UTF-8")
        r = self.run_cmd(["nbdinfo", "--list", server.uri], check=True)
        self.assertIn("export=\"two\"", r.stdout.replace("export: ", "export="))
        self.assertReplaced(server)

    def test_extents_empty(self):
        server = self.start_evil("extents-empty")
        h = server.connect(meta_contexts=["base:allocation"])
        old = pid_of(h)
        self.assertNbdError("EIO", h.block_status, 65536, 0, lambda *args: 0)
        self.assertRejected(server, "extents returned no extents")
        self.assertReplaced(server, old)

    def test_extents_more_than_nbdkit_keeps(self):
        # A correct worker shapes any answer to at most 1 Mi extents (tests/test_extents.py).
        server = self.start_evil("extents-too-many")
        h = server.connect(meta_contexts=["base:allocation"])
        old = pid_of(h)
        self.assertNbdError("EIO", h.block_status, 65536, 0, lambda *args: 0)
        self.assertRejected(server, "extents returned 1048577 extents, at most 1048576")
        self.assertReplaced(server, old)


if __name__ == "__main__":
    harness.main()
