"""recover=reopen: a connection whose worker dies is opened again on the replacement and its
requests in flight are sent again, so the client sees nothing; and every case where that
would not give the same answers is refused, the connection then failing as with recover=off."""

import os
import random
import re
import signal
import subprocess
import threading
import time
import unittest

import harness
from harness import NbdkitTestCase, pid_alive, wait_until, worker_pids

SIZE = 4 * 1024 * 1024
INFO = SIZE - 512
CRASH_OFFSET = 1024 * 1024
SLOW_OFFSET = 2 * 1024 * 1024
REOPENED = r"pyworker: connection \(export \"%s\"\) re-opened on worker process (\d+) after " \
           r"worker process %d was lost \(killed by SIGKILL\); (\d+) requests? sent again"


def info(h):
    text = bytes(h.pread(512, INFO)).rstrip(b"\0").decode()
    return dict(field.split("=", 1) for field in text.split(";"))


@unittest.skipIf(harness.REFERENCE, "kills pyworker's worker processes")
class RecoverTest(NbdkitTestCase):

    def disk(self, size=SIZE):
        path = os.path.join(self.tmp, "disk.img")
        rng = random.Random(1)
        with open(path, "wb") as f:
            for _ in range(0, size, 1 << 20):
                f.write(rng.randbytes(min(1 << 20, size)))
        return path

    def serve(self, *params, disk=None):
        self.path = disk or self.disk()
        return self.start(self.script("recover.py"), "file=" + self.path, "recover=reopen",
                          *params)

    def kill_worker_of(self, h):
        pid = int(info(h)["pid"])
        os.kill(pid, signal.SIGKILL)
        self.assertTrue(wait_until(lambda: not pid_alive(pid), 5))
        return pid

    def test_bad_value_is_refused_at_start_up(self):
        r = self.run_nbdkit("-f", "-U", os.path.join(self.tmp, "s"), script=self.script(
            "recover.py"), params=["file=" + self.disk(), "recover=maybe"])
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("recover=maybe: expected reopen or off", r.stderr)

    def test_a_death_is_invisible_to_the_client(self):
        server = self.serve()
        h = server.connect(export="disk-a")
        before = info(h)
        data = os.urandom(65536)
        h.pwrite(data, 8192)
        old = self.kill_worker_of(h)
        self.assertEqual(bytes(h.pread(65536, 8192)), data)  # no error, same data
        after = info(h)
        self.assertNotEqual(after["pid"], before["pid"])
        # Opened again with what the client gave: export name, readonly flag, TLS, and the
        # same peer identity through the nbdkit module (the client is libnbd in this process,
        # over a Unix socket: its credentials are this process's).
        given = ("export", "readonly", "tls", "peer_pid", "peer_uid", "peer_gid")
        self.assertEqual({k: after[k] for k in given}, {k: before[k] for k in given})
        self.assertEqual(after["export"], "disk-a")
        self.assertEqual((before["peer_pid"], before["peer_uid"], before["peer_gid"]),
                         (str(os.getpid()), str(os.getuid()), str(os.getgid())))
        self.assertEqual(after["served"], after["pid"])
        self.assertRegex(server.stderr(), REOPENED % ("disk-a", old))
        # Once per death, however many requests follow.
        h.pread(512, 0)
        self.assertEqual(len(re.findall("re-opened", server.stderr())), 1)

    def test_requests_in_flight_are_sent_again(self):
        server = self.serve()
        h = server.connect()
        pid = int(info(h)["pid"])
        with open(self.path, "rb") as f:
            expected = [f.read(65536) for _ in range(4)]
        # Four reads in flight (libnbd's async API, a PARALLEL script), held in the worker
        # until the test lets them go; the worker dies meanwhile.
        open(self.path + ".hold", "w").close()
        buffers = [harness.nbd.Buffer(65536) for _ in range(4)]
        cookies = [h.aio_pread(buffers[i], i * 65536) for i in range(4)]

        def held():
            try:
                with open(self.path + ".held") as f:
                    return len(f.read().split())
            except FileNotFoundError:
                return 0
        self.assertTrue(wait_until(lambda: held() == 4, 10), "held: %d" % held())
        self.assertFalse(any(h.aio_command_completed(c) for c in cookies))
        os.kill(pid, signal.SIGKILL)
        self.assertTrue(wait_until(lambda: not pid_alive(pid), 5))
        os.unlink(self.path + ".hold")
        for c in cookies:
            while not h.aio_command_completed(c):  # raises if the read failed
                h.poll(1)
        self.assertEqual([b.to_bytearray() for b in buffers], expected)
        self.assertRegex(server.stderr(), REOPENED % ("", pid))
        self.assertEqual(int(re.search(REOPENED % ("", pid), server.stderr()).group(2)), 4)

    def test_size_changed_at_reopen_is_refused(self):
        server = self.serve()
        h = server.connect(export="x")
        size = h.get_size()
        with open(self.path + ".size", "w") as f:
            f.write("0")
        old = self.kill_worker_of(h)
        self.assertNbdError("EIO", h.pread, 512, 0)
        log = server.stderr()
        self.assertRegex(log, r"pyworker: cannot re-open the connection \(export \"x\"\) on worker "
                              r"process \d+: get_size changed from %d to 0" % size)
        self.assertIn("lost the worker process (pid %d" % old, log)
        # From then on the connection fails as with recover=off; a new one is served.
        self.assertNbdError("EIO", h.pread, 512, 0)
        self.assertEqual(len(re.findall("cannot re-open", server.stderr())), 1)
        os.unlink(self.path + ".size")
        self.assertEqual(server.connect().get_size(), size)

    def test_a_can_answer_changed_at_reopen_is_refused(self):
        # nbdkit told the client the connection is multi-conn; the new handle says otherwise.
        server = self.serve()
        h = server.connect()
        self.assertTrue(h.can_multi_conn())
        open(self.path + ".single-conn", "w").close()
        self.kill_worker_of(h)
        self.assertNbdError("EIO", h.pread, 512, 0)
        self.assertRegex(server.stderr(), r"cannot re-open the connection \(export \"\"\) on "
                                          r"worker process \d+: can_multi_conn changed from 1 "
                                          r"to 0")

    def test_open_raising_at_reopen_is_refused(self):
        server = self.serve()
        h = server.connect()
        open(self.path + ".refuse-open", "w").close()
        self.kill_worker_of(h)
        self.assertNbdError("EIO", h.pread, 512, 0)
        self.assertRegex(server.stderr(), re.compile(
            r"cannot re-open the connection \(export \"\"\) on worker process \d+: open "
            r"failed: .*open refused by the test", re.S))

    def test_a_request_that_kills_every_worker_fails_after_the_second_death(self):
        server = self.serve()
        h = server.connect()
        first = int(info(h)["pid"])
        self.assertNbdError("EIO", h.pread, 512, CRASH_OFFSET)
        log = server.stderr()
        self.assertRegex(log, r"in flight at two worker deaths in a row \(worker process \d+ "
                              r"killed by SIGSEGV, \d+ killed by SIGSEGV\)")
        self.assertEqual(len(re.findall(r"error: pyworker: worker process \d+ killed by SIGSEGV$",
                                        log, re.M)), 2, log)
        # Other requests on the connection keep working (on a third worker).
        self.assertEqual(bytes(h.pread(512, 0)), open(self.path, "rb").read(512))
        self.assertNotIn(int(info(h)["pid"]), (first,))

    def test_a_timeout_kill_is_not_replayed(self):
        # timeout= also limits each step of the replacement's bring-up: not below 2 s for a
        # loaded machine.
        server = self.serve("timeout=2")
        h = server.connect()
        self.assertNbdError("EIO", h.pread, 512, SLOW_OFFSET)
        log = server.stderr()
        self.assertIn("no reply within timeout=2 seconds", log)
        self.assertNotIn("sent again", log.split("no reply within timeout")[1].split("\n")[0])
        # One worker killed, not two: the slow read was not sent to the replacement.
        self.assertTrue(wait_until(lambda: "killed by SIGKILL" in server.stderr(), 5))
        time.sleep(3)  # a replayed read would be killed after timeout= again
        log = server.stderr()
        self.assertEqual(len(re.findall(r"error: pyworker: worker process \d+ killed by SIGKILL$",
                                        log, re.M)), 1, log)
        self.assertEqual(bytes(h.pread(512, 0)), open(self.path, "rb").read(512))
        self.assertRegex(server.stderr(), r"re-opened .*; 1 request sent again")

    def test_max_restarts_reached_then_recovered(self):
        # A window far longer than the deaths take on a loaded machine.
        server = self.serve("max-restarts=1", "restart-window=10")
        h = server.connect()
        began = time.monotonic()  # every death is noticed after this
        self.kill_worker_of(h)
        h.pread(512, 0)  # the first death: re-opened
        self.kill_worker_of(h)
        self.assertNbdError("EIO", h.pread, 512, 0)  # past max-restarts: no worker now
        self.assertIn("workers died within 10 seconds", server.stderr())
        # The connection is not given up: once a worker can be had, it re-opens.
        def served():
            try:
                h.pread(512, 0)
                return True
            except harness.nbd.Error:
                return False
        self.assertTrue(wait_until(served, 30, interval=0.5), server.stderr())
        self.assertGreater(time.monotonic() - began, 10)  # not before the window has passed

    def served_by(self, h, reads=3):
        """The worker that opened h's handle, after checking that it answered `reads` reads."""
        seen = [info(h) for _ in range(reads)]
        self.assertEqual({(s["pid"], s["served"]) for s in seen}, {(seen[0]["pid"],) * 2})
        return int(seen[0]["pid"])

    def test_with_workers_2_a_connection_reopens_on_its_slots_replacement(self):
        server = self.serve("workers=2")
        # Slots take turns at open: "a" and "c" on one worker, "b" on the other; new
        # connections' turn is then at b's worker, live and idle, so a re-open that went where
        # a new connection would (rather than to its slot's replacement) would land there.
        conns = {name: server.connect(export=name) for name in ("a", "b", "c")}
        first = {name: self.served_by(h) for name, h in conns.items()}
        dead, other = first["a"], first["b"]
        self.assertNotEqual(dead, other)
        self.assertEqual(first["c"], dead, first)
        with open(self.path, "rb") as f:
            expected = f.read(65536)
        os.kill(dead, signal.SIGKILL)
        self.assertTrue(wait_until(lambda: not pid_alive(dead), harness.scaled(5)))
        # The other worker's connection is untouched: same handle, same worker, no re-open.
        self.assertEqual(self.served_by(conns["b"]), other)
        self.assertEqual(bytes(conns["b"].pread(65536, 0)), expected)
        # The dead worker's connections both re-open on one new worker, its slot's replacement.
        self.assertEqual(bytes(conns["a"].pread(65536, 0)), expected)
        new = self.served_by(conns["a"])
        self.assertNotIn(new, (dead, other))
        self.assertEqual(self.served_by(conns["c"]), new)
        self.assertEqual(bytes(conns["c"].pread(65536, 0)), expected)
        log = server.stderr()
        for name in ("a", "c"):
            reopened = re.search(REOPENED % (name, dead), log)
            self.assertIsNotNone(reopened, log)
            self.assertEqual(int(reopened.group(1)), new)
        self.assertNotIn('(export "b") re-opened', log)
        self.assertEqual(len(re.findall("re-opened", log)), 2, log)
        self.assertEqual(self.served_by(conns["b"]), other)
        # Two workers, as workers=2 says: the survivor and the replacement, no third.
        self.assertEqual(sorted(worker_pids(self.token)), sorted([other, new]))

    def test_after_a_reload_a_retired_workers_connection_reopens_on_the_new_generation(self):
        server = self.serve("workers=2", "reload=on-change")
        x, y = server.connect(export="x"), server.connect(export="y")
        old_x, old_y = self.served_by(x), self.served_by(y)
        self.assertNotEqual(old_x, old_y)
        # A change to the script (as editors save: a new file renamed over it) reloads.
        with open(server.script) as f:
            text = f.read()
        with open(server.script + ".new", "w") as f:
            f.write(text + "\n# changed by the test\n")
        os.rename(server.script + ".new", server.script)
        self.assertTrue(wait_until(lambda: "pyworker: reloaded" in server.stderr(),
                                   harness.scaled(15)), server.stderr())
        reload = re.search(r"pyworker: reloaded .*: worker process (\d+) -> (\d+), "
                           r"(\d+) -> (\d+)$", server.stderr(), re.M)
        self.assertIsNotNone(reload, server.stderr())
        generation = {int(reload.group(1)): int(reload.group(2)),
                      int(reload.group(3)): int(reload.group(4))}
        self.assertEqual(set(generation), {old_x, old_y})
        # The retired workers still serve the connections opened before the reload.
        self.assertEqual((self.served_by(x), self.served_by(y)), (old_x, old_y))
        os.kill(old_x, signal.SIGKILL)
        self.assertTrue(wait_until(lambda: not pid_alive(old_x), harness.scaled(5)))
        with open(self.path, "rb") as f:
            expected = f.read(65536)
        self.assertEqual(bytes(x.pread(65536, 0)), expected)
        # Re-opened on the new generation's worker of its slot: not on the other retired
        # worker (alive, serving y), not on a replacement of the retired one.
        reopened = self.served_by(x)
        self.assertEqual(reopened, generation[old_x], (old_x, generation))
        found = re.search(REOPENED % ("x", old_x), server.stderr())
        self.assertIsNotNone(found, server.stderr())
        self.assertEqual(int(found.group(1)), reopened)
        # y stays on its retired worker; new connections go to the new generation.
        self.assertEqual(self.served_by(y), old_y)
        self.assertNotIn('(export "y") re-opened', server.stderr())
        self.assertIn(self.served_by(server.connect(export="z")), set(generation.values()))
        self.assertEqual(sorted(worker_pids(self.token)),
                         sorted([old_y] + list(generation.values())))

    def test_recover_off_is_as_before(self):
        server = self.start(self.script("recover.py"), "file=" + self.disk())
        h = server.connect()
        self.kill_worker_of(h)
        self.assertNbdError("EIO", h.pread, 512, 0)
        self.assertNotIn("re-opened", server.stderr())

    def test_qemu_img_convert_while_workers_are_killed(self):
        size = 256 * 1024 * 1024
        source = self.disk(size)
        # examples/file.py: nothing but a file behind it. Deaths every few tenths of a second
        # would pass max-restarts' default at once.
        restarts = ["recover=reopen", "max-restarts=1000000", "restart-window=1"]
        server = self.start(self.example("file.py"), "file=" + source, *restarts)
        stop = threading.Event()
        kills = []

        def killer():
            # Every few tenths of a second, whichever worker serves.
            rng = random.Random(2)
            while not stop.wait(rng.uniform(0.1, 0.4)):
                pids = worker_pids(self.token)
                if pids:
                    try:
                        os.kill(rng.choice(pids), signal.SIGKILL)
                        kills.append(pids)
                    except ProcessLookupError:
                        pass

        copy = os.path.join(self.tmp, "copy.img")
        target = os.path.join(self.tmp, "target.img")
        with open(target, "wb") as f:
            f.truncate(size)
        into = self.start(self.example("file.py"), "file=" + target, *restarts)
        thread = threading.Thread(target=killer)
        thread.start()
        try:
            # Out of the export, then into it (the second export is a file of zeroes).
            out = self.run_cmd(["qemu-img", "convert", "-f", "raw", "-O", "raw",
                                server.uri, copy], timeout=120)
            self.assertEqual(out.returncode, 0, out.stderr + server.stderr()[-3000:])
            back = self.run_cmd(["qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", copy,
                                 into.uri], timeout=120)
            self.assertEqual(back.returncode, 0, back.stderr + into.stderr()[-3000:])
        finally:
            stop.set()
            thread.join()
        self.assertGreater(len(kills), 2, "too few workers killed during the copies")
        with open(source, "rb") as a, open(copy, "rb") as b:
            self.assertTrue(a.read() == b.read(), "qemu-img's copy differs from the source")
        with open(source, "rb") as a, open(target, "rb") as b:
            self.assertTrue(a.read() == b.read(), "the copy written back differs")


if __name__ == "__main__":
    unittest.main()
