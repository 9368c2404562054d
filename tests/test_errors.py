# Failures: exceptions in callbacks, nbdkit.set_error, scripts that cannot start.

import os
import re

import harness
from harness import NbdkitTestCase, pattern


class CallbackErrorTest(NbdkitTestCase):

    def setUp(self):
        super().setUp()
        self.path = self.script("test-errors.py")
        self.server = self.start(self.path)
        self.h = self.server.connect()

    def log_entry(self, callback):
        """The nbdkit_error text for `callback`, waiting briefly for it to reach the log."""
        marker = "%s: %s: error:" % (self.path, callback)
        harness.wait_until(lambda: marker in self.server.stderr(), 5)
        log = self.server.stderr()
        self.assertIn(marker, log)
        return log[log.index(marker):]

    def test_exception_is_eio_with_traceback(self):
        self.assertNbdError("EIO", self.h.pread, 512, 4096)
        entry = self.log_entry("pread")
        self.assertIn("Traceback (most recent call last)", entry)
        self.assertIn("RuntimeError: pread exploded at offset 4096", entry)
        self.assertRegex(entry, r'File "[^"]*%s", line \d+, in pread'
                         % re.escape(os.path.basename(self.path)))

    def test_serves_on_after_exception(self):
        self.h.pwrite(pattern(512, 1), 0)
        for _ in range(3):
            self.assertNbdError("EIO", self.h.pread, 512, 4096 + 512)
        self.assertEqual(self.h.pread(512, 0), pattern(512, 1))
        # and a fresh connection too
        self.assertEqual(self.server.connect().pread(512, 0), pattern(512, 1))

    def test_set_error_enospc(self):
        self.assertNbdError("ENOSPC", self.h.pwrite, b"a" * 512, 8192)
        self.assertIn("OSError: disk full at offset 8192", self.log_entry("pwrite"))
        self.assertEqual(self.h.pread(512, 8192), bytes(512))

    def test_set_error_eperm(self):
        self.assertNbdError("EPERM", self.h.pwrite, b"a" * 512, 12288)
        self.assertIn("PermissionError: no writes at offset 12288", self.log_entry("pwrite"))

    def test_set_error_does_not_leak_into_next_request(self):
        # set_error belongs to the failing request: a later plain exception is EIO again.
        self.assertNbdError("ENOSPC", self.h.pwrite, b"a" * 512, 8192)
        self.assertNbdError("EIO", self.h.pread, 512, 4096)
        self.h.pwrite(b"b" * 512, 0)
        self.assertEqual(self.h.pread(512, 0), b"b" * 512)

    def test_flush_exception(self):
        self.assertNbdError("EIO", self.h.flush)
        self.assertIn("ValueError: flush went wrong", self.log_entry("flush"))

    def test_zero_eopnotsupp_falls_back_to_writing_zeroes(self):
        self.h.pwrite(b"\xaa" * 4096, 16384)
        self.h.zero(4096, 16384)
        self.assertEqual(self.h.pread(4096, 16384), bytes(4096))

    def test_get_size_error(self):
        text = ("API_VERSION = 2\n"
                "def open(readonly): return 1\n"
                "def get_size(h): raise ArithmeticError('size unknowable 7f3e')\n"
                "def pread(h, buf, offset, flags): pass\n")
        path = self.script("gs.py", text=text)
        server = self.start(path)
        with self.assertRaises(harness.nbd.Error):
            server.connect()
        harness.wait_until(lambda: "size unknowable 7f3e" in server.stderr(), 5)
        self.assertIn("%s: get_size: error:" % path, server.stderr())
        self.assertIn("ArithmeticError: size unknowable 7f3e", server.stderr())

    def test_open_error(self):
        path = self.script("test-open-raises.py")
        server = self.start(path)
        with self.assertRaises(harness.nbd.Error):
            server.connect(export="bad")
        harness.wait_until(lambda: "open refused export bad" in server.stderr(), 5)
        log = server.stderr()
        self.assertIn("%s: open: error:" % path, log)
        self.assertIn("RuntimeError: open refused export bad", log)
        self.assertEqual(server.connect().pread(4, 0), b"xxxx")


class StartupErrorTest(NbdkitTestCase):
    """Scripts that cannot serve: nbdkit exits non-zero and says why on stderr."""

    def run_failing(self, script, *params):
        r = self.run_nbdkit("-f", "-U", os.path.join(self.tmp, "sock"), script=script,
                            params=params, timeout=30)
        self.assertNotEqual(r.returncode, 0, "nbdkit started:\n" + r.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "sock")))
        return r.stderr

    def test_syntax_error(self):
        err = self.run_failing(self.script("test-syntax-error.py"))
        self.assertIn("SyntaxError", err)
        self.assertIn("test-syntax-error-%s.py" % self.token, err)

    def test_missing_pread(self):
        err = self.run_failing(self.script("test-no-pread.py"))
        self.assertRegex(err, r"pread")
        self.assertRegex(err.lower(), r"(missing|required|not defined|must)")

    def test_missing_script_file(self):
        err = self.run_failing(os.path.join(self.tmp, "nonexistent-%s.py" % self.token))
        self.assertIn("nonexistent-%s.py" % self.token, err)

    def test_raises_at_load(self):
        err = self.run_failing(self.script("test-load-raises.py"))
        self.assertIn("RuntimeError: load-time failure 4c1d", err)

    def test_config_raises_on_bad_key(self):
        err = self.run_failing(self.script("test-config-raises.py"), "size=1k", "colour=blue")
        self.assertIn("RuntimeError: unknown parameter colour=blue", err)
        self.assertIn("config", err)

    def test_config_raises_on_bad_value(self):
        # nbdkit.parse_size raising ValueError inside config
        err = self.run_failing(self.script("test-config-raises.py"), "size=lots")
        self.assertIn("ValueError", err)

    def test_config_complete_raises(self):
        err = self.run_failing(self.script("test-config-raises.py"), "size=13")
        self.assertIn("ValueError: size 13 is unlucky", err)
        self.assertIn("config_complete", err)

    def test_thread_model_junk_is_a_clear_error(self):
        # nbdkit python ignores this silently (DESIGN.md section 3); pyworker says what is wrong.
        if harness.REFERENCE:
            self.skipTest("nbdkit's python plugin accepts any thread_model answer")
        text = ("API_VERSION = 2\n"
                "def thread_model(): return 17\n"
                "def open(readonly): return 1\n"
                "def get_size(h): return 512\n"
                "def pread(h, buf, offset, flags): pass\n")
        err = self.run_failing(self.script("tm.py", text=text))
        self.assertIn("thread_model", err)
        self.assertIn("17", err)

    def test_good_config_still_works(self):
        server = self.start(self.script("test-config-raises.py"), "size=2k")
        self.assertEqual(server.connect().get_size(), 2048)

    def test_no_script(self):
        if harness.REFERENCE:
            self.skipTest("nbdkit's python plugin aborts without a script (DESIGN.md section 3)")
        r = self.run_nbdkit("-f", "-U", os.path.join(self.tmp, "sock"), self.plugin_path(),
                            timeout=30)
        self.assertNotEqual(r.returncode, 0, r.stderr)
        self.assertIn("script", r.stderr)
        # a crash is not an answer
        self.assertNotIn("Segmentation fault", r.stderr)
        self.assertGreater(r.returncode, 0, "killed by a signal")


if __name__ == "__main__":
    harness.main()
