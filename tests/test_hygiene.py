"""Resource hygiene: nbdkit's fds, threads and memory do not grow across many worker restarts
and many connections. After a warm-up, /proc/<nbdkit>/fd, Threads and VmRSS are measured; then
RESTARTS times a worker is SIGKILLed and a connection is served by its replacement, and
CONNECTIONS connections each read a sector; then they are measured again. fds and threads must
be back to exactly where they were, RSS within RSS_SLACK_KIB, and no child left a zombie.

The issue's larger numbers are a manual run (README, "Security model"):
  PYWORKER_HYGIENE_RESTARTS=1000 PYWORKER_HYGIENE_CONNECTIONS=10000 \\
    /usr/bin/python3 -m unittest -v test_hygiene
"""

import os
import signal
import sys
import time
import unittest

import harness
from harness import NbdkitTestCase, pid_alive, wait_until

RESTARTS = int(os.environ.get("PYWORKER_HYGIENE_RESTARTS", "200"))
CONNECTIONS = int(os.environ.get("PYWORKER_HYGIENE_CONNECTIONS", "2000"))
RSS_SLACK_KIB = 8 * 1024


def zombies(pids):
    out = []
    for p in pids:
        try:
            with open("/proc/%d/stat" % p) as f:
                stat = f.read()
            if stat[stat.rindex(")") + 2] == "Z":
                out.append(p)
        except OSError:
            pass
    return out


def measure(pid):
    with open("/proc/%d/status" % pid) as f:
        status = dict(line.split(":", 1) for line in f if ":" in line)
    return {"fds": len(os.listdir("/proc/%d/fd" % pid)),
            "threads": int(status["Threads"]),
            "rss_kib": int(status["VmRSS"].split()[0])}


@unittest.skipIf(harness.REFERENCE, "pyworker's worker processes")
class HygieneTest(NbdkitTestCase):

    def read_once(self, server):
        h = wait_until(lambda: self.try_connect(server), 10)
        self.assertTrue(h, "cannot connect:\n" + server.stderr()[-3000:])
        self.assertEqual(len(h.pread(512, 0)), 512)
        h.shutdown()
        self.handles.remove(h)

    def try_connect(self, server):
        try:
            return server.connect()
        except harness.nbd.Error:
            return None

    def restart(self, server):
        workers = harness.child_pids(server.pid)
        self.assertEqual(len(workers), 1, workers)
        os.kill(workers[0], signal.SIGKILL)
        self.assertTrue(wait_until(lambda: not pid_alive(workers[0]), 10))
        self.read_once(server)  # served by a replacement
        new = harness.child_pids(server.pid)
        self.assertNotIn(workers[0], new)

    def settled(self, server, before):
        # Replaced workers' RPC threads are joined, and their fds closed, once their last
        # connection has closed: give nbdkit's connection threads a moment to finish.
        now = measure(server.pid)
        if now["fds"] == before["fds"] and now["threads"] == before["threads"]:
            return now
        return None

    def test_restarts_and_connections(self):
        server = self.start(self.script("hostile.py"), "max-restarts=1000000",
                            "restart-window=1")
        for _ in range(10):
            self.restart(server)
        for _ in range(100):
            self.read_once(server)
        before = wait_until(lambda: measure(server.pid), 1)
        time.sleep(0.5)
        before = measure(server.pid)

        start = time.monotonic()
        for _ in range(RESTARTS):
            self.restart(server)
        restarts_took = time.monotonic() - start
        start = time.monotonic()
        for _ in range(CONNECTIONS):
            self.read_once(server)
        connections_took = time.monotonic() - start

        after = wait_until(lambda: self.settled(server, before), 10) or measure(server.pid)
        sys.stderr.write("\nhygiene: %d restarts in %.1f s, %d connections in %.1f s; "
                         "before %s, after %s\n"
                         % (RESTARTS, restarts_took, CONNECTIONS, connections_took,
                            before, after))
        self.assertEqual(after["fds"], before["fds"], "nbdkit's fds grew")
        self.assertEqual(after["threads"], before["threads"], "nbdkit's threads grew")
        self.assertLess(after["rss_kib"] - before["rss_kib"], RSS_SLACK_KIB,
                        "nbdkit's RSS grew")
        self.assertEqual(zombies(harness.child_pids(server.pid, include_zombies=True)), [], "unreaped workers")
        self.assertEqual(len(harness.child_pids(server.pid)), 1)
        self.assertIsNone(server.proc.poll())


if __name__ == "__main__":
    harness.main()
