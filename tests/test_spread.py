"""spread=on: a connection whose script answers can_multi_conn True (PARALLEL) holds a handle
on every worker and each request goes to the least busy one; flush reaches every handle; a
connection stays on one worker when the script says can_multi_conn False or when its handles
answer differently; a worker killed under a spread connection."""

import os
import signal
import time
import unittest

import nbd

import harness
from harness import NbdkitTestCase, pid_alive, wait_until

SIZE = 1024 * 1024


def served_by(data):
    """The pids that served `data` (one tag per 512-byte sector)."""
    pids = set()
    for sector in range(0, len(data), 512):
        tag = bytes(data[sector:sector + 16]).decode().strip()
        assert tag.startswith("pid=") and tag.endswith(";"), tag
        pids.add(int(tag[4:-1]))
    return pids


@unittest.skipIf(harness.REFERENCE, "pyworker's spread= parameter")
class SpreadTest(NbdkitTestCase):

    def serve(self, *params, args=()):
        self.path = os.path.join(self.tmp, "disk.img")
        with open(self.path, "wb") as f:
            f.write(bytes(range(256)) * (SIZE // 256))
        return self.start(self.script("spread.py"), "file=" + self.path, *params, args=args)

    def journal(self):
        with open(self.path + ".journal") as f:
            return [line.split() for line in f.read().splitlines()]

    def concurrent_reads(self, h, count=16, length=4096):
        """`count` reads in flight at once on one connection: the pids that answered each."""
        buffers = [nbd.Buffer(length) for _ in range(count)]
        cookies = [h.aio_pread(buf, (i * length) % SIZE) for i, buf in enumerate(buffers)]
        for cookie in cookies:
            while not h.aio_command_completed(cookie):
                h.poll(-1)
        return [served_by(buf.to_bytearray()) for buf in buffers]

    def test_one_connections_reads_are_served_by_every_worker(self):
        server = self.serve("workers=2", "spread=on", "slow=0.05", args=["-v"])
        h = server.connect()
        answered = set().union(*self.concurrent_reads(h))
        workers = set(self.assertWorkerRunning())
        self.assertEqual(answered, workers, "one connection, 16 reads in flight")
        self.assertRegex(server.stderr(), r"connection \(export \"\"\) spread over worker "
                                          r"processes \d+, \d+")
        # The data is the file's wherever it was read.
        data = bytes(h.pread(4096, 8192))
        with open(self.path, "rb") as f:
            f.seek(8192)
            expected = f.read(4096)
        for sector in range(0, 4096, 512):
            self.assertEqual(data[sector + 16:sector + 512], expected[sector + 16:sector + 512])

    def test_flush_reaches_every_handle_and_close_runs_on_every_handle(self):
        server = self.serve("workers=2", "spread=on")
        h = server.connect()
        h.pwrite(b"\x5a" * 4096, 0)
        h.flush()
        workers = set(self.assertWorkerRunning())
        flushed = {int(pid) for pid, event in self.journal() if event == "flush"}
        self.assertEqual(flushed, workers)
        h.shutdown()
        self.handles.remove(h)
        del h
        self.assertTrue(wait_until(
            lambda: {int(pid) for pid, event in self.journal() if event == "close"} == workers,
            10), self.journal())
        opened = [int(pid) for pid, event in self.journal() if event == "open"]
        self.assertEqual(sorted(opened), sorted(workers), "one open per worker")

    def test_a_flush_that_fails_on_one_handle_fails(self):
        # One handle's flush failing fails the client's flush, whichever came first.
        server = self.serve("workers=2", "spread=on", "flush_fails=1")
        h = server.connect()
        h.pread(512, 0)  # spreads the connection
        self.assertNbdError("EIO", h.flush)
        self.assertIn("RuntimeError: flush fails here", server.stderr())

    def test_can_multi_conn_false_keeps_one_worker(self):
        server = self.serve("workers=2", "spread=on", "multi_conn=0", "slow=0.05",
                            args=["-v"])
        h = server.connect()
        answered = set().union(*self.concurrent_reads(h))
        self.assertEqual(len(answered), 1, answered)
        pid = answered.pop()
        self.assertRegex(server.stderr(), r"connection \(export \"\"\) stays on worker "
                                          r"process %d: the script's can_multi_conn is false"
                         % pid)
        self.assertEqual([p for p, event in self.journal() if event == "open"], [str(pid)])

    def test_handles_that_disagree_keep_one_worker_and_say_why(self):
        server = self.serve("workers=2", "spread=on", "disagree=1", "slow=0.05")
        h = server.connect()
        answered = set().union(*self.concurrent_reads(h))
        self.assertEqual(len(answered), 1, answered)
        pid = answered.pop()
        self.assertEqual(h.get_size(), SIZE)
        self.assertRegex(server.stderr(),
                         r"pyworker: connection \(export \"\"\) is not spread, it stays on "
                         r"worker process %d: on worker process \d+, get_size changed from "
                         r"%d to %d" % (pid, SIZE, 2 * SIZE))
        # The other handle was opened and closed again.
        events = self.journal()
        other = [p for p, event in events if event == "open" and p != str(pid)]
        self.assertEqual(len(other), 1, events)
        self.assertTrue(wait_until(lambda: [other[0], "close"] in self.journal(), 10))

    def test_an_open_that_fails_on_another_worker_keeps_one_worker(self):
        server = self.serve("workers=2", "spread=on", "open_fails=1", "slow=0.05")
        h = server.connect()
        answered = set().union(*self.concurrent_reads(h))
        self.assertEqual(len(answered), 1, answered)
        self.assertRegex(server.stderr(),
                         r"(?s)pyworker: connection \(export \"\"\) is not spread, it stays "
                         r"on worker process %d: on worker process \d+, open failed: .*"
                         r"RuntimeError: open fails here" % answered.pop())
        self.assertEqual(bytes(h.pread(512, 0))[16:], bytes(range(16, 256)) + bytes(range(256)))

    def test_spread_with_one_worker_is_harmless(self):
        server = self.serve("workers=1", "spread=on", args=["-v"])
        h = server.connect()
        self.assertEqual(len(set().union(*self.concurrent_reads(h))), 1)
        h.pwrite(b"\x11" * 512, 512)
        h.flush()
        self.assertEqual(bytes(h.pread(512, 512))[16:], b"\x11" * 496)
        self.assertNotIn("spread over", server.stderr())

    def test_bad_value_is_refused_at_start_up(self):
        r = self.run_nbdkit("-f", "-U", os.path.join(self.tmp, "s"),
                            script=self.script("spread.py"),
                            params=["file=/dev/null", "spread=maybe"])
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("spread=maybe: expected a boolean (1/0, true/false, yes/no, on/off)",
                      r.stderr)

    def kill_one_under_load(self, server, h):
        """Kills the worker that is not the connection's first while reads are in flight on
        both; returns (killed pid, the reads' outcomes: pid sets or nbd.Error)."""
        self.concurrent_reads(h)  # spread
        with open(self.path + ".owner") as f:
            first = int(f.read())
        workers = set(self.assertWorkerRunning())
        victim = (workers - {first}).pop()
        buffers = [nbd.Buffer(4096) for _ in range(16)]
        cookies = [h.aio_pread(buf, i * 4096) for i, buf in enumerate(buffers)]
        # Long enough for the reads to reach both workers, well inside their slow=0.5.
        time.sleep(0.1)
        os.kill(victim, signal.SIGKILL)
        self.assertTrue(wait_until(lambda: not pid_alive(victim), 5))
        outcomes = []
        for cookie, buf in zip(cookies, buffers):
            try:
                while not h.aio_command_completed(cookie):
                    h.poll(-1)
                outcomes.append(served_by(buf.to_bytearray()))
            except nbd.Error as e:
                outcomes.append(e)
        return victim, outcomes

    def test_a_killed_worker_ends_a_spread_connection_without_recover(self):
        server = self.serve("workers=2", "spread=on", "slow=0.5")
        h = server.connect()
        victim, outcomes = self.kill_one_under_load(server, h)
        self.assertTrue(any(isinstance(o, nbd.Error) for o in outcomes), outcomes)
        # From then on the connection fails, also where the live worker could answer.
        for _ in range(4):
            self.assertRaises(nbd.Error, h.pread, 512, 0)
        # nbdkit serves on: a new connection gets a live worker.
        self.assertEqual(len(served_by(server.connect().pread(512, 0))), 1)

    def test_a_killed_worker_is_invisible_with_recover_reopen(self):
        server = self.serve("workers=2", "spread=on", "slow=0.5", "recover=reopen")
        h = server.connect()
        victim, outcomes = self.kill_one_under_load(server, h)
        errors = [o for o in outcomes if isinstance(o, nbd.Error)]
        self.assertEqual(errors, [], "the requests in flight went to the other worker")
        self.assertNotIn(victim, set().union(*outcomes[8:]))
        # A later request re-opens the lost handle on the replacement: both serve again.
        self.assertTrue(wait_until(
            lambda: len(set().union(*self.concurrent_reads(h))) == 2, 20), server.stderr())
        self.assertRegex(server.stderr(),
                         r"re-opened on worker process \d+ after worker process %d was lost "
                         r"\(killed by SIGKILL\); its requests went to the connection's other "
                         r"workers" % victim)
        self.assertNotIn(victim, set().union(*self.concurrent_reads(h)))


if __name__ == "__main__":
    unittest.main()
