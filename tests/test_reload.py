"""reload=on-change and reload-trigger=: a changed script reaches new connections without
restarting nbdkit; existing connections stay on the old worker until they close."""

import os
import threading
import time
import unittest

import harness
from harness import NbdkitTestCase, wait_until, worker_pids

SCRIPT = """
import os
API_VERSION = 2
VERSION = b"%s"
def config(key, value):
    pass
def thread_model():
    return 3  # PARALLEL
def open(readonly): return 1
def get_size(h): return 4096
def pread(h, buf, offset, flags):
    buf[:] = (VERSION + b";%%d" %% os.getpid()).ljust(len(buf), b"\\0")
"""


# Says when it cleans up and exits, on stdout and stderr, as a script that tidies up does.
EXIT_SCRIPT = SCRIPT + """
import atexit, sys
def cleanup():
    print("cleanup %%s in %%d" %% (VERSION.decode(), os.getpid()))
def _exiting():
    print("atexit %%s in %%d" %% (VERSION.decode(), os.getpid()))
    sys.stderr.write("atexit-stderr %%s in %%d\\n" %% (VERSION.decode(), os.getpid()))
atexit.register(_exiting)
"""


def version(h):
    text = bytes(h.pread(64, 0)).rstrip(b"\0").decode()
    name, pid = text.split(";")
    return name, int(pid)


class ReloadTest(NbdkitTestCase):

    def write_script(self, path, text):
        # As editors do: a new file renamed over the old one.
        with open(path + ".new", "w") as f:
            f.write(text)
        os.rename(path + ".new", path)

    def serving(self, server):
        # nbdkit listens before after_fork, where the watch on the script begins: a change
        # before the first connection is answered may not be seen.
        self.assertEqual(version(server.connect())[0], "v0")
        self.close_handles()

    def reloaded(self, server, count):
        return wait_until(lambda: server.stderr().count("pyworker: reloaded") >= count, 15)

    def test_new_connections_get_the_new_script_old_ones_keep_the_old(self):
        script = self.script("reload.py", text=SCRIPT % b"one".decode())
        server = self.start(script, "reload=on-change", "key=value")
        old = server.connect()
        self.assertEqual(version(old)[0], "one")
        old_pid = version(old)[1]
        self.write_script(script, SCRIPT % "two")
        self.assertTrue(self.reloaded(server, 1), server.stderr())
        new = server.connect()
        self.assertEqual(version(new)[0], "two")
        self.assertEqual(version(old), ("one", old_pid), "the old connection moved")
        # The log names both workers and the script's modification time.
        log = server.stderr()
        self.assertRegex(log, r"reloaded .*reload-t\w+\.py \(the script changed, modified "
                              r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\): worker process %d -> %d"
                         % (old_pid, version(new)[1]))
        # The old worker exits once its last connection has closed.
        old.shutdown()
        self.handles.remove(old)
        self.assertTrue(wait_until(lambda: old_pid not in worker_pids(self.token), 10))
        self.assertEqual(worker_pids(self.token), [version(new)[1]])

    def test_a_change_while_nbdkit_starts_is_seen(self):
        # The script changes itself in after_fork, before the watch on it begins (nbdkit
        # listens already): once the watch is in place it must see that the script is not the
        # one the workers loaded, and reload it.
        text = SCRIPT % "v0" + """
import builtins
_PATH = __file__  # gone once the script has run
def after_fork():
    if VERSION == b"v0":
        with builtins.open(_PATH) as f:
            new = f.read().replace('VERSION = b"v0"', 'VERSION = b"v1"')
        with builtins.open(_PATH, "w") as f:
            f.write(new)
"""
        script = self.script("reload.py", text=text)
        server = self.start(script, "reload=on-change")
        self.assertTrue(self.reloaded(server, 1), server.stderr())
        self.assertIn("(the script changed, modified", server.stderr())
        self.assertEqual(version(server.connect())[0], "v1")

    def test_a_retired_worker_cleans_up_and_its_exit_output_reaches_the_log(self):
        # Issue 20 item 3: it exited without cleanup(), and what atexit handlers print was lost.
        script = self.script("reload.py", text=EXIT_SCRIPT % "one")
        server = self.start(script, "reload=on-change")
        old = server.connect()
        old_pid = version(old)[1]
        self.write_script(script, EXIT_SCRIPT % "two")
        self.assertTrue(self.reloaded(server, 1), server.stderr())
        new_pid = version(server.connect())[1]
        time.sleep(0.5)
        self.assertNotIn("cleanup one", server.stderr(), "cleaned up under a live connection")
        self.assertEqual(version(old), ("one", old_pid))
        old.shutdown()
        self.handles.remove(old)
        lines = ["cleanup one in %d" % old_pid, "atexit one in %d" % old_pid,
                 "atexit-stderr one in %d" % old_pid]
        self.assertTrue(wait_until(lambda: all(l in server.stderr() for l in lines), 10),
                        server.stderr())
        self.assertFalse(harness.pid_alive(old_pid))
        # In the order the worker printed them; the new worker is untouched.
        log = server.stderr()
        self.assertLess(log.index(lines[0]), log.index(lines[1]))
        self.assertNotIn("in %d" % new_pid, log)
        self.close_handles()
        self.assertEqual(server.stop(), 0)
        log = server.stderr()
        for line in ("cleanup two in %d", "atexit two in %d", "atexit-stderr two in %d"):
            self.assertEqual(log.count(line % new_pid), 1, log)
        self.assertEqual(log.count(lines[0]), 1, "cleanup ran twice in the retired worker")

    def test_a_broken_script_leaves_service_unchanged(self):
        script = self.script("reload.py", text=SCRIPT % "one")
        server = self.start(script, "reload=on-change")
        before = version(server.connect())
        self.write_script(script, "this is not python(\n")
        self.assertTrue(wait_until(lambda: "failed; the current workers keep serving"
                                   in server.stderr(), 15), server.stderr())
        self.assertIn("SyntaxError", server.stderr())
        self.assertEqual(version(server.connect()), before)
        # A later good change is picked up.
        self.write_script(script, SCRIPT % "three")
        self.assertTrue(self.reloaded(server, 1), server.stderr())
        self.assertEqual(version(server.connect())[0], "three")

    def test_reload_trigger_without_a_change(self):
        script = self.script("reload.py", text=SCRIPT % "one")
        trigger = os.path.join(self.tmp, "reload-now")
        server = self.start(script, "reload-trigger=" + trigger)
        before = version(server.connect())
        # Without reload=on-change a change alone does nothing...
        self.write_script(script, SCRIPT % "two")
        time.sleep(1)
        self.assertEqual(version(server.connect()), before)
        # ...touching the trigger reloads.
        with open(trigger, "w"):
            pass
        self.assertTrue(self.reloaded(server, 1), server.stderr())
        self.assertIn("reload-trigger was touched", server.stderr())
        self.assertEqual(version(server.connect())[0], "two")

    def test_every_worker_is_replaced_and_none_is_left_over(self):
        script = self.script("reload.py", text=SCRIPT % "v0")
        server = self.start(script, "reload=on-change", "workers=2")
        self.serving(server)
        for n in range(1, 4):
            self.write_script(script, SCRIPT % ("v%d" % n))
            self.assertTrue(self.reloaded(server, n), server.stderr())
            seen = {version(server.connect()) for _ in range(2)}
            self.assertEqual({v for v, _ in seen}, {"v%d" % n})
            self.assertEqual(len({p for _, p in seen}), 2)
            self.close_handles()
        self.assertTrue(wait_until(lambda: len(worker_pids(self.token)) == 2, 10),
                        worker_pids(self.token))

    def test_no_request_fails_during_reloads(self):
        script = self.script("reload.py", text=SCRIPT % "v0")
        server = self.start(script, "reload=on-change")
        self.serving(server)
        errors, served, stop = [], [0], threading.Event()

        def load():
            while not stop.is_set():
                try:
                    h = harness.nbd.NBD()
                    h.connect_unix(server.sock)
                    for _ in range(20):
                        h.pread(64, 0)
                        served[0] += 1
                    h.shutdown()
                except Exception as e:  # any failure is what this test looks for
                    errors.append(repr(e))

        clients = [threading.Thread(target=load, daemon=True) for _ in range(3)]
        for t in clients:
            t.start()
        for n in range(1, 4):
            self.write_script(script, SCRIPT % ("v%d" % n))
            self.assertTrue(self.reloaded(server, n), server.stderr())
        stop.set()
        for t in clients:
            t.join(30)
        self.assertEqual(errors, [])
        self.assertGreater(served[0], 100)

    def test_bad_reload_value(self):
        r = self.run_nbdkit("-f", "-U", os.path.join(self.tmp, "s"),
                            script=self.script("reload.py", text=SCRIPT % "x"),
                            params=["reload=sometimes"])
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("reload=sometimes: expected on-change or off", r.stderr)


if __name__ == "__main__":
    unittest.main()
