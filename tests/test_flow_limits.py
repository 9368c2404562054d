"""Nothing a worker sends can fill nbdkit's memory, and nbdkit keeps serving meanwhile.

A script can flood nbdkit.debug() or print megabytes: its messages reach nbdkit's log and
nbdkit's RSS stays where it was. A runaway worker (tests/evil-worker.c++, host-flood modes)
that calls Host.debug in a loop and stops reading the plugin's replies, or never finishes its
calls, is held back or cut off; Cap'n Proto alone would let it grow the plugin without end
(measured before plugin/bounded-message-stream.c++: +60 MB/s of queued replies)."""

import os
import threading
import time
import unittest

import harness
from harness import NbdkitTestCase, wait_until

EVIL = os.environ.get("PYWORKER_EVIL_WORKER",
                      os.path.join(harness.SOURCE_ROOT, "build", "tests",
                                   "nbdkit-pyworker-worker-evil"))

RSS_GROWTH_LIMIT_MB = 24
# What nbdkit may grow by during a flood (it starts at ~10 MB); each flood below moves far
# more than that through it.


def rss_mb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS for %d" % pid)


class Sampler:
    """nbdkit's RSS every 0.1 s, from a thread, while a test floods it."""

    def __init__(self, pid):
        self.pid = pid
        self.samples = [rss_mb(pid)]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop.wait(0.1):
            try:
                self.samples.append(rss_mb(self.pid))
            except (OSError, AssertionError):
                return

    def finish(self):
        self.stop.set()
        self.thread.join()
        return self.samples


@unittest.skipIf(harness.REFERENCE, "pyworker's own worker protocol")
@unittest.skipIf(harness.INSTALLED, harness.NEEDS_BUILD_TREE)
class FlowLimitTest(NbdkitTestCase):

    def assertBounded(self, sampler, server):
        samples = sampler.finish()
        if harness.ASAN:
            # AddressSanitizer's quarantine keeps freed memory for a while: RSS says nothing
            # about what nbdkit holds then (the normal run checks it). The rest of each test
            # (served, cut off, timed out) still runs.
            return samples
        growth = max(samples) - samples[0]
        self.assertLess(growth, RSS_GROWTH_LIMIT_MB,
                        "nbdkit grew from %.0f to %.0f MB (samples: %s)\n%s"
                        % (samples[0], max(samples), [round(s) for s in samples],
                           server.stderr()[-2000:]))
        return samples

    def flood_script(self, mode, total, *args):
        env = self.env(FLOOD=mode, FLOOD_BYTES=str(total))
        server = self.start(self.script("flooding.py"), args=args, env=env)
        sampler = Sampler(server.pid)
        h = server.connect()
        slowest = 0
        while True:
            start = time.monotonic()
            text = bytes(h.pread(64, 0)).rstrip(b"\0").decode()
            slowest = max(slowest, time.monotonic() - start)
            if text.startswith("done="):
                break
            self.assertTrue(time.monotonic() - start < 60, "the flood never ended")
            time.sleep(0.01)
        samples = self.assertBounded(sampler, server)
        self.assertLess(slowest, 5, "reads stalled during the flood")
        return server, int(text.split("=")[1]), samples

    def test_debug_flood(self):
        # 100 MiB of nbdkit.debug() messages, logged with -v.
        server, count, samples = self.flood_script("debug", 100 << 20, "-v")
        self.assertEqual(count, 100 << 10)
        log = server.stderr()
        self.assertGreater(log.count("x" * 1024), count * 0.99, "debug messages went missing")

    def test_printed_lines(self):
        self.flood_script("lines", 48 << 20)

    def test_printed_without_newlines(self):
        server, _, _ = self.flood_script("unterminated", 48 << 20)
        self.assertEqual(server.stderr().count("x"), 48 << 20)

    # --- runaway workers ---

    def start_evil(self, mode, *params):
        self.assertTrue(os.access(EVIL, os.X_OK), "not built: %s" % EVIL)
        env = self.env(PYWORKER_EVIL=mode, PYWORKER_EVIL_REAL=harness.WORKER,
                       PYWORKER_EVIL_FLOOD_SECONDS="4",
                       PYWORKER_EVIL_ONCE=os.path.join(self.tmp, "evil-done"))
        return self.start(self.script("hostile.py"), "worker=" + EVIL, *params, env=env)

    def connect_in_background(self, server):
        """The first connection, whose worker turns runaway during the handshake."""
        outcome = []

        def run():
            try:
                h = server.connect()
                outcome.append(bytes(h.pread(8, 0)))
            except harness.nbd.Error as e:
                outcome.append(e)
        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread, outcome

    def assertServesAgain(self, server):
        h = wait_until(lambda: self._try_read(server), 20)
        self.assertTrue(h, "no new connection was served:\n" + server.stderr()[-2000:])

    def _try_read(self, server):
        try:
            return bytes(server.connect().pread(4, 0)) == b"pid="
        except harness.nbd.Error:
            return False

    def test_runaway_worker_that_stops_reading(self):
        # Its calls wait in its own socket: nbdkit stops reading from it, and its memory stays
        # where it was. The connection it was opening is served all the same (its callbacks
        # travel on lanes, which the flood does not touch); the next RPC call it owes an
        # answer (the next connection's default_export) gets none: timeout= kills it, and the
        # connection after that gets a new worker.
        server = self.start_evil("host-flood-unread", "timeout=3")
        sampler = Sampler(server.pid)
        thread, outcome = self.connect_in_background(server)
        thread.join(30)
        self.assertFalse(thread.is_alive(), "the first connection never ended")
        self.assertIsInstance(outcome[0], bytes, server.stderr()[-2000:])
        self.assertTrue(outcome[0].startswith(b"pid="), outcome[0])
        with self.assertRaises(harness.nbd.Error):
            server.connect()
        self.assertBounded(sampler, server)
        self.assertIn("no reply within timeout=3 seconds", server.stderr())
        self.assertServesAgain(server)

    def test_runaway_worker_that_never_finishes(self):
        server = self.start_evil("host-flood-unfinished")
        sampler = Sampler(server.pid)
        thread, outcome = self.connect_in_background(server)
        self.assertTrue(wait_until(lambda: "runaway worker" in server.stderr(), 20),
                        server.stderr()[-2000:])
        thread.join(30)
        self.assertFalse(thread.is_alive(), "the first connection never ended")
        self.assertBounded(sampler, server)
        self.assertIn("calls to the plugin that it never finished; disconnecting it",
                      server.stderr())
        self.assertServesAgain(server)

    def test_flooding_worker_that_finishes_its_calls(self):
        # Legal, only excessive: nbdkit takes the calls at its own pace and keeps serving that
        # very connection.
        server = self.start_evil("host-flood")
        sampler = Sampler(server.pid)
        h = server.connect()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            self.assertEqual(bytes(h.pread(4, 0)), b"pid=")
            time.sleep(0.05)
        self.assertTrue(wait_until(lambda: "flood done" in server.stderr(), 20))
        self.assertBounded(sampler, server)


if __name__ == "__main__":
    harness.main()
