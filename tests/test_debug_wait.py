"""debug-wait= and stopped workers: a person debugging a worker is never raced by nbdkit.

debug-wait=true makes each new worker wait for a debugger before it loads the script (nothing
times out meanwhile, timeout= included); a worker stopped with SIGSTOP (or held at a gdb
prompt) is not treated as hung unless timeout= says so.
"""

import os
import shutil
import signal
import threading
import time
import unittest

import harness
from harness import NbdkitTestCase, stop_process, wait_until


class DebugWaitTest(NbdkitTestCase):

    def test_worker_waits_for_a_debugger_before_loading(self):
        gdb = shutil.which("gdb", path=harness.PATH)
        self.assertIsNotNone(gdb, "gdb is missing (run tools/setup)")
        marker = os.path.join(self.tmp, "loaded")
        script = self.script("debug-wait.py", text="""
open(%r, "w").close()   # the script ran
API_VERSION = 2
def open(readonly): return 1
def get_size(h): return 4096
def pread(h, buf, offset, flags): buf[:] = b"d" * len(buf)
""" % marker)
        server = self.start(script, "debug-wait=1", "timeout=1", wait=False)
        self.assertTrue(wait_until(lambda: "waits for a debugger" in server.stderr(), 15),
                        server.stderr())
        pid = int(server.stderr().split("worker process ")[1].split()[0])
        # Three times timeout=: nothing may give up on the waiting worker. (1 s, not less:
        # timeout= also limits open(), under gdb, on a loaded machine.)
        time.sleep(3)
        self.assertFalse(os.path.exists(marker), "the script ran before a debugger attached")
        self.assertFalse(os.path.exists(server.sock))
        self.assertIsNone(server.proc.poll(), server.stderr())

        self.continue_under_gdb(pid)
        self.assertTrue(wait_until(lambda: harness.listening(server.sock), 30), server.stderr())
        self.assertTrue(os.path.exists(marker))
        self.assertEqual(bytes(server.connect().pread(8, 0)), b"d" * 8)


class StoppedWorkerTest(NbdkitTestCase):

    def test_a_stopped_worker_is_not_killed_without_timeout(self):
        script = self.script("supervision-faults.py")
        server = self.start(script)
        h = server.connect()
        first = bytes(h.pread(512, 0))
        pid = int(first.rstrip(b"\0").split(b";pid=")[1])
        try:
            stop_process(pid)
            result = []

            def read():
                try:
                    result.append(bytes(h.pread(512, 0)))
                except Exception as error:  # noqa: BLE001 -- the failure is what the test reports
                    result.append(error)
            reader = threading.Thread(target=read, daemon=True)
            reader.start()
            reader.join(3)
            self.assertTrue(reader.is_alive(), "a read ended on a stopped worker: %r\n%s"
                            % (result, server.stderr()))
        finally:
            os.kill(pid, signal.SIGCONT)
        reader.join(30)
        self.assertEqual(result, [first], "the read failed or the worker was replaced")
        self.assertNotIn("killed", server.stderr())


class TraceTest(NbdkitTestCase):

    def test_trace_flag_logs_each_callback_duration(self):
        script = self.example("ramdisk.py")
        traced = self.start(script, "size=1M", args=["-v", "-D", "pyworker.trace=1"])
        traced.connect().pread(4096, 8192)
        self.assertRegex(traced.stderr(), r"debug: pyworker: pread: \d+ us")
        self.assertRegex(traced.stderr(), r"debug: pyworker: open: \d+ us")
        quiet = self.start(script, "size=1M", args=["-v"])  # off by default
        quiet.connect().pread(4096, 8192)
        self.assertNotRegex(quiet.stderr(), r"pyworker: pread: \d+ us")


class IdentityTest(NbdkitTestCase):

    def test_worker_output_and_debug_name_the_worker(self):
        script = self.script("identity.py", text="""
import os, sys
import nbdkit
API_VERSION = 2
def config(key, value):
    print("printed in config by", os.getpid())
    print("no newline at the end", end="", file=sys.stderr)
def open(readonly):
    nbdkit.debug("debug from open in %d" % os.getpid())
    return 1
def get_size(h): return 4096
def pread(h, buf, offset, flags): buf[:] = bytes(len(buf))
""")
        server = self.start(script, "key=value", args=["-v"])
        server.connect().pread(512, 0)
        pid = self.assertWorkerRunning()[0]
        self.assertTrue(wait_until(lambda: "debug from open" in server.stderr(), 10))
        log = server.stderr()
        self.assertIn("pyworker[%d]: printed in config by %d\n" % (pid, pid), log)
        self.assertIn("debug: pyworker[%d]: debug from open in %d" % (pid, pid), log)
        self.close_handles()
        self.assertEqual(server.stop(), 0)
        self.assertIn("pyworker[%d]: no newline at the end\n" % pid, server.stderr())


if __name__ == "__main__":
    unittest.main()
