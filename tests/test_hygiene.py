"""Resource hygiene at the issue's scale: nbdkit's fds, threads and memory do not grow across
1,000 worker restarts and 10,000 connections. After a warm-up, /proc/<nbdkit>/fd, Threads and
VmRSS are measured; then RESTARTS times the serving worker is SIGKILLed and a new connection is
served by its replacement, and CONNECTIONS connections each read a sector; then they are
measured again. fds and threads must be back to exactly where they were, RSS within
RSS_SLACK_KIB, and no child of nbdkit may be left a zombie.

The driving side is kept cheap, so that the time goes to nbdkit and the workers: the worker to
kill is the one that answered the last read (the script returns its pid), its exit is awaited on
a pidfd (no polling), and connections come from DRIVERS client threads at once (nbdkit spends
~2.5 ms of CPU on a connection, the client ~0.2 ms: one client thread leaves a core idle).
PYWORKER_HYGIENE_RESTARTS and PYWORKER_HYGIENE_CONNECTIONS change the counts for experiments.
"""

import os
import select
import signal
import sys
import threading
import time
import unittest

import harness
from harness import NbdkitTestCase, wait_until

RESTARTS = int(os.environ.get("PYWORKER_HYGIENE_RESTARTS", "1000"))
CONNECTIONS = int(os.environ.get("PYWORKER_HYGIENE_CONNECTIONS", "10000"))
DRIVERS = 2
RSS_SLACK_KIB = 8 * 1024
SLOW_OFFSET = 512 * 1024  # hostile.py's read that holds its lane for a while
LANES = 8  # more lanes than the load below ever holds at once (2 reads and lingering closes)
LIFETIME = 1800  # seconds for the watchdog: ~2 minutes here, far more on a slow machine
WORKER_EXIT_TIMEOUT = 10


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


def fd_targets(pid):
    """What each of `pid`'s fds refers to, to name the fd that a failure left behind."""
    out = {}
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            out[int(fd)] = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            pass
    return out


def measure(pid):
    with open("/proc/%d/status" % pid) as f:
        status = dict(line.split(":", 1) for line in f if ":" in line)
    return {"fds": len(os.listdir("/proc/%d/fd" % pid)),
            "fd_targets": fd_targets(pid),
            "threads": int(status["Threads"]),
            "rss_kib": int(status["VmRSS"].split()[0])}


def read_once(server):
    """One connection that reads a sector; returns the pid of the worker that served it (the
    script answers with it). Not in the test's handles: it closes when this returns."""
    h = harness.nbd.NBD()
    h.connect_unix(server.sock)
    text = bytes(h.pread(512, 0)).rstrip(b"\0").decode()
    h.shutdown()
    return int(text.removeprefix("pid="))


def kill_and_wait(pid):
    """SIGKILLs `pid` and blocks until it has exited (a zombie counts), through a pidfd opened
    before the signal; False if it is still alive after WORKER_EXIT_TIMEOUT."""
    fd = os.pidfd_open(pid)
    try:
        signal.pidfd_send_signal(fd, signal.SIGKILL)
        return bool(select.select([fd], [], [], WORKER_EXIT_TIMEOUT)[0])
    finally:
        os.close(fd)


@unittest.skipIf(harness.REFERENCE, "pyworker's worker processes")
class HygieneTest(NbdkitTestCase):

    def restarts(self, server, count):
        pid = read_once(server)
        for _ in range(count):
            self.assertTrue(kill_and_wait(pid), "worker %d still alive after SIGKILL" % pid)
            new = read_once(server)  # a new connection is served by a replacement
            self.assertNotEqual(new, pid)
            pid = new

    def connections(self, server, count):
        errors = []

        def drive(n):
            try:
                for _ in range(n):
                    read_once(server)
            except Exception as e:  # reported below, on the test's thread
                errors.append(e)

        drivers = [threading.Thread(target=drive, args=(count // DRIVERS + (i < count % DRIVERS),))
                   for i in range(DRIVERS)]
        for d in drivers:
            d.start()
        for d in drivers:
            d.join()
        self.assertEqual(errors, [], "connections failed:\n" + server.stderr()[-3000:])

    def fill_lanes(self, server):
        """Makes the serving worker's lane pool hold exactly LANES lanes, whatever the load
        before needed (a pool keeps the lanes its busiest moment made, each an fd in nbdkit):
        LANES slow reads at once, on LANES connections."""
        handles = [server.connect() for _ in range(LANES)]
        cookies = [(h, h.aio_pread(harness.nbd.Buffer(512), SLOW_OFFSET)) for h in handles]
        for h, cookie in cookies:
            while not h.aio_command_completed(cookie):
                h.poll(-1)
        for h in handles:
            h.shutdown()

    def settled(self, server, before):
        # Replaced workers' RPC threads are joined, and their fds closed, once their last
        # connection has closed: give nbdkit's connection threads a moment to finish.
        now = measure(server.pid)
        if now["fds"] == before["fds"] and now["threads"] == before["threads"]:
            return now
        return None

    def steady(self, server):
        # The baseline: the warm-up's connection threads may still be ending (a loaded
        # machine); two measurements 0.5 s apart must agree.
        first = measure(server.pid)
        time.sleep(0.5)
        now = measure(server.pid)
        if now["fds"] == first["fds"] and now["threads"] == first["threads"]:
            return now
        return None

    def test_restarts_and_connections(self):
        server = self.start(self.script("hostile.py"), "max-restarts=1000000",
                            "restart-window=1", lifetime=LIFETIME)
        self.restarts(server, 10)
        self.connections(server, 100)
        self.fill_lanes(server)
        before = wait_until(lambda: self.steady(server), 30)
        self.assertTrue(before, "nbdkit's fds and threads did not settle after the warm-up")

        start = time.monotonic()
        self.restarts(server, RESTARTS)
        restarts_took = time.monotonic() - start
        start = time.monotonic()
        self.connections(server, CONNECTIONS)
        connections_took = time.monotonic() - start
        self.fill_lanes(server)

        after = wait_until(lambda: self.settled(server, before), 10) or measure(server.pid)
        sys.stderr.write("\nhygiene: %d restarts in %.1f s, %d connections in %.1f s; "
                         "before %s, after %s\n"
                         % (RESTARTS, restarts_took, CONNECTIONS, connections_took,
                            {k: v for k, v in before.items() if k != "fd_targets"},
                            {k: v for k, v in after.items() if k != "fd_targets"}))
        grown = {fd: target for fd, target in after["fd_targets"].items()
                 if before["fd_targets"].get(fd) != target}
        self.assertEqual(after["fds"], before["fds"], "nbdkit's fds grew: %s" % grown)
        self.assertEqual(after["threads"], before["threads"], "nbdkit's threads grew")
        if not harness.ASAN:  # ASan holds freed memory in quarantine (256 MiB): RSS grows
            self.assertLess(after["rss_kib"] - before["rss_kib"], RSS_SLACK_KIB,
                            "nbdkit's RSS grew")
        children = harness.child_pids(server.pid, include_zombies=True)
        self.assertEqual(zombies(children), [], "unreaped workers")
        self.assertEqual(len(children), 1, children)
        self.assertIsNone(server.proc.poll())


if __name__ == "__main__":
    harness.main()
