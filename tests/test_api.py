# API_VERSION 1 and 2 call shapes, flags, and the nbdkit module as scripts use it.

import json

import harness
from harness import NbdkitTestCase, pattern

MiB = 1024 * 1024
LOG_AT = MiB - 4096

NBDKIT_FLAG_MAY_TRIM = 1
NBDKIT_FLAG_FUA = 2
NBDKIT_FLAG_FAST_ZERO = 8


def call_log(h):
    return json.loads(h.pread(4096, LOG_AT).rstrip(b"\0"))


class Api1Test(NbdkitTestCase):

    def setUp(self):
        super().setUp()
        self.server = self.start(self.script("test-api1.py"))
        self.h = self.server.connect()

    def test_v1_shapes(self):
        h = self.h
        data = pattern(8192, 7)
        h.pwrite(data, 4096)
        self.assertEqual(h.pread(8192, 4096), data)
        h.flush()
        h.trim(4096, 4096)
        h.zero(4096, 8192)                                   # may trim
        h.zero(512, 0, harness.nbd.CMD_FLAG_NO_HOLE)         # may not trim
        self.assertEqual(h.pread(8192, 4096), bytes(8192))
        log = call_log(h)
        self.assertEqual(log, [["pwrite", 8192, 4096, log[0][3]],
                               ["flush"],
                               ["trim", 4096, 4096],
                               ["zero", 4096, 8192, True],
                               ["zero", 512, 0, False]])
        # the buffer a v1 pwrite gets is bytes-like; which type exactly is not part of the API
        self.assertIn(log[0][3], ("bytes", "bytearray", "memoryview"))

    def test_v1_fua_is_emulated_with_flush(self):
        # v1 has no flags: can_fua defaults to EMULATE (flush exists), nbdkit calls flush.
        h = self.h
        self.assertTrue(h.can_fua())
        h.pwrite(b"f" * 512, 0, harness.nbd.CMD_FLAG_FUA)
        self.assertEqual(call_log(h), [["pwrite", 512, 0, call_log(h)[0][3]], ["flush"]])

    def test_v1_short_pread_fails(self):
        self.assertNbdError("EIO", self.h.pread, 512, 65536)
        harness.wait_until(lambda: "too small" in self.server.stderr(), 5)
        self.assertIn("buffer returned from pread is too small", self.server.stderr())

    def test_v1_long_pread_truncated(self):
        data = pattern(512, 8)
        self.h.pwrite(data, 131072)
        self.assertEqual(self.h.pread(512, 131072), data)
        self.assertEqual(self.h.pread(512, 131072 + 512), bytes(512))


class Api2Test(NbdkitTestCase):

    def setUp(self):
        super().setUp()
        self.server = self.start(self.script("test-api2.py"))
        self.h = self.server.connect()

    def test_v2_flags_reach_callbacks(self):
        h = self.h
        nbd = harness.nbd
        data = pattern(4096, 9)
        h.pwrite(data, 0)
        h.pwrite(data, 4096, nbd.CMD_FLAG_FUA)
        self.assertEqual(h.pread(8192, 0), data + data)
        h.flush()
        h.trim(4096, 0, nbd.CMD_FLAG_FUA)
        h.zero(4096, 4096)
        h.zero(4096, 8192, nbd.CMD_FLAG_NO_HOLE | nbd.CMD_FLAG_FUA)
        h.zero(4096, 12288, nbd.CMD_FLAG_FAST_ZERO)
        self.assertEqual(call_log(h), [
            ["pwrite", 4096, 0, 0],
            ["pwrite", 4096, 4096, NBDKIT_FLAG_FUA],
            ["pread", 8192, 0, 0, call_log(h)[2][4]],
            ["flush", 0],
            ["trim", 4096, 0, NBDKIT_FLAG_FUA],
            ["zero", 4096, 4096, NBDKIT_FLAG_MAY_TRIM],
            ["zero", 4096, 8192, NBDKIT_FLAG_FUA],
            ["zero", 4096, 12288, NBDKIT_FLAG_MAY_TRIM | NBDKIT_FLAG_FAST_ZERO],
        ])

    def test_v2_pread_gets_writable_buffer(self):
        self.h.pread(512, 0)
        entry = call_log(self.h)[0]
        self.assertEqual(entry[:4], ["pread", 512, 0, 0])
        self.assertIn(entry[4], ("bytearray", "memoryview"))

    def test_v2_large_requests(self):
        # 64 MiB is the largest request nbdkit accepts; the disk is 1 MiB so use many 1 MiB
        # reads in flight instead, plus one full-disk zero.
        h = self.h
        data = pattern(LOG_AT, 11)
        h.pwrite(data, 0)
        self.assertEqual(h.pread(LOG_AT, 0), data)
        h.zero(LOG_AT, 0)
        self.assertEqual(h.pread(LOG_AT, 0), bytes(LOG_AT))


class ModuleTest(NbdkitTestCase):
    """The `nbdkit` module's functions and constants as a script sees them."""

    SCRIPT = r'''
import errno, json, sys
import nbdkit

API_VERSION = 2
results = {}

def check(name, f):
    try:
        results[name] = ["ok", f()]
    except Exception as e:
        results[name] = [type(e).__name__]

check("k", lambda: nbdkit.parse_size("7k"))
check("M", lambda: nbdkit.parse_size("17M"))
check("plain", lambda: nbdkit.parse_size("4096"))
check("E", lambda: nbdkit.parse_size("1E"))
check("junk", lambda: nbdkit.parse_size("seven"))
check("int", lambda: nbdkit.parse_size(7))
check("debug", lambda: nbdkit.debug("debug message from the script"))
results["consts"] = [nbdkit.THREAD_MODEL_SERIALIZE_CONNECTIONS,
                     nbdkit.THREAD_MODEL_SERIALIZE_ALL_REQUESTS,
                     nbdkit.THREAD_MODEL_SERIALIZE_REQUESTS, nbdkit.THREAD_MODEL_PARALLEL,
                     nbdkit.FLAG_MAY_TRIM, nbdkit.FLAG_FUA, nbdkit.FLAG_REQ_ONE,
                     nbdkit.FLAG_FAST_ZERO, nbdkit.FUA_NONE, nbdkit.FUA_EMULATE,
                     nbdkit.FUA_NATIVE, nbdkit.CACHE_NONE, nbdkit.CACHE_EMULATE,
                     nbdkit.CACHE_NATIVE, nbdkit.EXTENT_HOLE, nbdkit.EXTENT_ZERO]
results["module"] = nbdkit.__name__

def open(readonly):
    return 1

def get_size(h):
    return 4096

def pread(h, buf, offset, flags):
    nbdkit.debug("debug from pread at %d" % offset)
    buf[:] = json.dumps(results).encode().ljust(4096, b"\0")[offset:offset + len(buf)]
'''

    def test_nbdkit_module(self):
        server = self.start(self.script("module.py", text=self.SCRIPT), args=["-v"])
        results = json.loads(server.connect().pread(4096, 0).rstrip(b"\0"))
        self.assertEqual(results["k"], ["ok", 7 * 1024])
        self.assertEqual(results["M"], ["ok", 17 * MiB])
        self.assertEqual(results["plain"], ["ok", 4096])
        self.assertEqual(results["E"], ["ok", 1 << 60])
        self.assertEqual(results["junk"], ["ValueError"])
        self.assertEqual(results["int"], ["TypeError"])
        self.assertEqual(results["debug"], ["ok", None])
        self.assertEqual(results["consts"], [0, 1, 2, 3, 1, 2, 4, 8, 0, 1, 2, 0, 1, 2, 1, 2])
        self.assertEqual(results["module"], "nbdkit")
        harness.wait_until(lambda: "debug from pread at 0" in server.stderr(), 5)
        self.assertIn("debug from pread at 0", server.stderr())

    def test_debug_at_load_time(self):
        server = self.start(self.script("module.py", text=self.SCRIPT), args=["-v"])
        server.connect().pread(4096, 0)
        harness.wait_until(lambda: "debug message from the script" in server.stderr(), 5)
        self.assertIn("debug message from the script", server.stderr())

    def test_debug_silent_without_v(self):
        server = self.start(self.script("module.py", text=self.SCRIPT))
        server.connect().pread(4096, 0)
        self.assertNotIn("debug message from the script", server.stderr())
        self.assertNotIn("debug from pread", server.stderr())

    def test_shutdown(self):
        server = self.start(self.script("test-shutdown.py"))
        h = server.connect()
        self.assertEqual(h.pread(4, 4000), b"ssss")
        try:
            h.pread(4, 0)  # asks for shutdown; the reply may or may not make it back
        except harness.nbd.Error:
            pass
        self.assertIsNotNone(server.wait(15), "nbdkit.shutdown() did not stop nbdkit")
        self.assertEqual(server.proc.returncode, 0, server.stderr())

    def test_pythonpath(self):
        moddir = self.tmp + "/mods"
        import os
        os.mkdir(moddir)
        with open(moddir + "/helper_%s.py" % self.token, "w") as f:
            f.write("ANSWER = b'from-pythonpath'\n")
        text = ("import helper_%s as helper\nAPI_VERSION = 2\n"
                "def open(readonly): return 1\n"
                "def get_size(h): return len(helper.ANSWER)\n"
                "def pread(h, buf, offset, flags):\n"
                "    buf[:] = helper.ANSWER[offset:offset + len(buf)]\n" % self.token)
        server = self.start(self.script("pp.py", text=text), env=self.env(PYTHONPATH=moddir))
        h = server.connect()
        self.assertEqual(h.pread(h.get_size(), 0), b"from-pythonpath")


if __name__ == "__main__":
    harness.main()
