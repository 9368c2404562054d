# The examples, and a script defining every callback, under nbdkit's own python plugin and
# under pyworker: clients must see the same sizes, data, flags and errors.

import json
import os

import harness
from harness import PYTHON, PYWORKER, NbdkitTestCase, errno_name, pattern

MiB = 1024 * 1024
BOTH = (PYTHON, PYWORKER)


def attempt(results, func, *args):
    """Record the outcome of one client call: ('ok', value) or ('error', errno name)."""
    try:
        value = func(*args)
        if isinstance(value, bytearray):
            value = bytes(value)
        results.append(("ok", value))
    except harness.nbd.Error as e:
        results.append(("error", errno_name(e)))


def flags(h):
    return {name: getattr(h, name)() for name in (
        "is_read_only", "can_flush", "can_fua", "can_trim", "can_zero", "can_fast_zero",
        "can_multi_conn", "can_cache", "is_rotational", "get_size")}


class ExamplesTest(NbdkitTestCase):

    def both(self, scenario, script_name, params=(), args=()):
        """Run scenario(handle, server) against a fresh server of each plugin; returns the
        results after asserting they are equal. `params` may be a function of the plugin."""
        out = {}
        for plugin in BOTH:
            script = self.example(script_name)
            p = params(plugin) if callable(params) else params
            server = self.start(script, *p, plugin=plugin, args=args)
            h = server.connect()
            out[plugin] = scenario(h, server)
        self.assertEqual(out[PYWORKER], out[PYTHON])
        return out[PYWORKER]

    def test_ramdisk_same_under_both(self):
        def scenario(h, server):
            r = [flags(h)]
            attempt(r, h.pwrite, pattern(65536, 1), 4096)
            attempt(r, h.pwrite, pattern(512, 2), 3 * MiB + 7)
            attempt(r, h.pread, 70000, 4000)
            attempt(r, h.zero, 8192, 8192)
            attempt(r, h.trim, 4096, 32768)
            attempt(r, h.flush)
            attempt(r, h.pread, 65536, 4096)
            attempt(r, h.pread, 1024, 3 * MiB)
            attempt(r, h.pwrite, b"x" * 512, 4 * MiB - 512)
            h.set_strict_mode(0)
            attempt(r, h.pread, 512, 4 * MiB)   # beyond the end
            return r
        r = self.both(scenario, "ramdisk.py", ["size=4M"])
        self.assertEqual(r[0]["get_size"], 4 * MiB)
        self.assertTrue(r[0]["can_multi_conn"])
        self.assertEqual(r[3], ("ok", bytes(96) + pattern(65536, 1) + bytes(4368)))
        expect = bytearray(65536)
        expect[:] = pattern(65536, 1)
        expect[8192 - 4096:16384 - 4096] = bytes(8192)
        expect[32768 - 4096:36864 - 4096] = bytes(4096)
        self.assertEqual(r[7], ("ok", bytes(expect)))
        self.assertEqual(r[10], ("error", "EINVAL"))

    def test_ramdisk_readonly_same_under_both(self):
        def scenario(h, server):
            r = [flags(h)]
            h.set_strict_mode(0)
            attempt(r, h.pwrite, b"x" * 512, 0)
            attempt(r, h.zero, 512, 0)
            attempt(r, h.pread, 512, 0)
            return r
        r = self.both(scenario, "ramdisk.py", ["size=1M"], args=["-r"])
        self.assertTrue(r[0]["is_read_only"])
        self.assertEqual(r[1], ("error", "EPERM"))
        self.assertEqual(r[3], ("ok", bytes(512)))

    def test_errors_same_under_both(self):
        def scenario(h, server):
            r = [flags(h)]
            attempt(r, h.pread, 512, 0)
            attempt(r, h.pread, 512, 4096)        # bad sector
            attempt(r, h.pread, 8192, 0)          # overlaps it
            attempt(r, h.pwrite, b"w" * 512, 0)   # read-only region
            attempt(r, h.zero, 512, 1024)
            attempt(r, h.pwrite, b"w" * 512, 8192)
            attempt(r, h.pread, 512, 8192)
            attempt(r, h.zero, 256, 8192 + 256)
            attempt(r, h.pread, 512, 8192)
            marker = "%s: pread: error:" % server.script
            harness.wait_until(lambda: marker in server.stderr(), 5)
            log = server.stderr()
            r.append(marker in log)
            r.append("OSError: bad sector in [4096, 8192)" in log)
            r.append("PermissionError: region [0, 4096) is read-only" in log)
            return r
        r = self.both(scenario, "errors.py", ["bad=4096-8191", "readonly=0-4095", "size=1M"])
        self.assertEqual(r[0]["get_size"], MiB)
        self.assertEqual(r[1:], [("ok", bytes(512)), ("error", "EIO"), ("error", "EIO"),
                                 ("error", "EPERM"), ("error", "EPERM"), ("ok", None),
                                 ("ok", b"w" * 512), ("ok", None),
                                 ("ok", b"w" * 256 + bytes(256)),
                                 True, True, True])

    def test_file_same_under_both(self):
        original = pattern(2 * MiB, 3)
        files = {}

        def params(plugin):
            path = os.path.join(self.tmp, "disk-%s.img" % plugin)
            with open(path, "wb") as f:
                f.write(original)
            files[plugin] = path
            return ["file=" + path]

        def scenario(h, server):
            r = [flags(h)]
            attempt(r, h.pread, 65536, MiB)
            attempt(r, h.pwrite, pattern(4096, 4), 12345, harness.nbd.CMD_FLAG_FUA)
            attempt(r, h.pwrite, pattern(MiB, 5), MiB)
            attempt(r, h.flush)
            attempt(r, h.pread, 4096, 12345)
            h.set_strict_mode(0)
            attempt(r, h.pread, 512, 2 * MiB)
            return r
        r = self.both(scenario, "file.py", params)
        self.assertEqual(r[0]["get_size"], 2 * MiB)
        self.assertTrue(r[0]["can_fua"])
        self.assertEqual(r[1], ("ok", original[MiB:MiB + 65536]))
        self.assertEqual(r[5], ("ok", pattern(4096, 4)))
        expect = bytearray(original)
        expect[12345:12345 + 4096] = pattern(4096, 4)
        expect[MiB:] = pattern(MiB, 5)
        for plugin in BOTH:
            with open(files[plugin], "rb") as f:
                self.assertEqual(f.read(), bytes(expect), "%s: file content" % plugin)

    def test_file_readonly(self):
        path = os.path.join(self.tmp, "ro.img")
        with open(path, "wb") as f:
            f.write(pattern(MiB, 6))
        os.chmod(path, 0o444)
        server = self.start(self.example("file.py"), "file=" + path, args=["-r"])
        h = server.connect()
        self.assertTrue(h.is_read_only())
        self.assertEqual(h.pread(4096, 0), pattern(MiB, 6)[:4096])

    def test_file_requires_file_parameter(self):
        for plugin in BOTH:
            r = self.run_nbdkit("-f", "-U", os.path.join(self.tmp, "s"),
                                script=self.example("file.py"), plugin=plugin)
            self.assertNotEqual(r.returncode, 0, plugin)
            self.assertIn("file parameter is required", r.stderr, plugin)


class LifecycleTest(NbdkitTestCase):
    """The same callbacks, in the same order, under both plugins."""

    def test_cleanup_and_atexit_output_reach_the_log_at_exit(self):
        # Issue 20 item 3: under pyworker the output of atexit handlers was lost, even in a
        # plain --run; nbdkit python prints it. (On stderr: what a script prints to stdout
        # once nbdkit serves is lost in-process, README "Differences".)
        script = self.script("exit-output.py", text=(
            "import atexit, sys\n"
            "API_VERSION = 2\n"
            "def cleanup(): sys.stderr.write('cleanup says bye\\n')\n"
            "atexit.register(lambda: sys.stderr.write('atexit says bye\\n'))\n"
            "def open(readonly): return 1\n"
            "def get_size(h): return 512\n"
            "def pread(h, buf, offset, flags): buf[:] = bytes(len(buf))\n"))
        for plugin in BOTH:
            with self.subTest(plugin=plugin):
                r = self.run_nbdkit("-U", "-", "--run", "nbdinfo --size \"$uri\"",
                                    script=script, plugin=plugin)
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertEqual(r.stdout.strip(), "512")
                for line in ("cleanup says bye", "atexit says bye"):
                    self.assertRegex(r.stderr, "(?m)^(pyworker\\[\\d+\\]: )?%s$" % line)
                self.assertLess(r.stderr.index("cleanup says"), r.stderr.index("atexit says"))

    def run_lifecycle(self, plugin, args=()):
        log = os.path.join(self.tmp, "lifecycle-%s.log" % plugin)
        server = self.start(self.script("test-lifecycle.py"), "log=" + log, "extra=1",
                            plugin=plugin, args=args)
        h = server.connect(export="first")
        h.pwrite(b"l" * 512, 0)
        self.assertEqual(h.pread(512, 0), b"l" * 512)
        h.pread(512, 512)
        self.close_handles()
        # close runs when the connection ends, before nbdkit quits
        harness.wait_until(lambda: "close" in open(log).read(), 10)
        h = server.connect(export="second")
        self.close_handles()
        harness.wait_until(lambda: open(log).read().count("close") == 2, 10)
        self.assertEqual(server.stop(), 0, server.stderr())
        with open(log) as f:
            return f.read().splitlines()

    def test_callback_sequence(self):
        out = {plugin: self.run_lifecycle(plugin) for plugin in BOTH}
        self.assertEqual(out[PYWORKER], out[PYTHON])
        seq = out[PYWORKER]
        self.assertEqual(seq[:4], ["config log", "config extra", "config_complete",
                                   "get_ready"])
        self.assertIn("open False first", seq)
        self.assertIn("close 3", seq)
        self.assertIn("open False second", seq)
        self.assertIn("close 0", seq)
        self.assertEqual(seq[-2:], ["cleanup", "atexit"])

    def test_callback_sequence_readonly(self):
        out = {}
        # -r: open(readonly=True), and writes never reach the script
        for plugin in BOTH:
            log = os.path.join(self.tmp, "ro-%s.log" % plugin)
            server = self.start(self.script("test-lifecycle.py"), "log=" + log,
                                plugin=plugin, args=["-r"])
            h = server.connect()
            h.pread(512, 0)
            self.close_handles()
            harness.wait_until(lambda: "close" in open(log).read(), 10)
            server.stop()
            with open(log) as f:
                out[plugin] = f.read().splitlines()
        self.assertEqual(out[PYWORKER], out[PYTHON])
        self.assertIn("preconnect True", out[PYWORKER])
        self.assertIn("open True ", out[PYWORKER])


class QuirksTest(NbdkitTestCase):

    def test_quirky_answers_same_under_both(self):
        out = {}
        for plugin in BOTH:
            server = self.start(self.script("test-quirks.py"), plugin=plugin)
            results = []
            for args in (["--json", "nbd+unix:///plain?socket=" + server.sock],
                         ["--json", "nbd+unix:///caf%C3%A9?socket=" + server.sock],
                         ["--list", "--json", "nbd+unix:///?socket=" + server.sock],
                         ["--map", "nbd+unix:///plain?socket=" + server.sock]):
                r = self.run_cmd(["nbdinfo"] + args)
                results.append((r.returncode, r.stdout.replace(server.sock, "SOCK")))
            out[plugin] = results
        self.assertEqual(out[PYWORKER], out[PYTHON])
        info = json.loads(out[PYWORKER][0][1])["exports"][0]
        self.assertTrue(info["is_read_only"])       # can_write returned 1, not True
        self.assertFalse(info["can_flush"])          # "yes" is not True
        self.assertEqual(info["export-size"], 3 * MiB + 512)
        cafe = json.loads(out[PYWORKER][1][1])["exports"][0]
        self.assertEqual(cafe["description"], "exportaci\u00f3n caf\u00e9 \u2713")


class BadReturnsTest(NbdkitTestCase):

    def test_bad_returns_same_under_both(self):
        out = {}
        for plugin in BOTH:
            server = self.start(self.script("test-bad-returns.py"), plugin=plugin)
            h = server.connect()
            r = []
            for kind in range(8):
                attempt(r, h.pread, 16, kind * 4096)
            for export in ("float", "str", "negative", "raises"):
                try:
                    r.append(("ok", server.connect(export=export).get_size()))
                except harness.nbd.Error:
                    r.append(("error", "connect"))
            out[plugin] = r
        self.assertEqual(out[PYWORKER], out[PYTHON])
        self.assertEqual(out[PYWORKER][:3], [("ok", b"b" * 16), ("ok", b"a" * 16),
                                             ("ok", b"m" * 16)])
        self.assertEqual(out[PYWORKER][3][0], "error")


class FullScriptTest(NbdkitTestCase):
    """test-full.py defines nearly every callback: compare what nbdinfo reports."""

    def nbdinfo(self, server, *args, export=None):
        uri = "nbd+unix:///%s?socket=%s" % (export or "", server.sock)
        r = self.run_cmd(["nbdinfo"] + list(args) + [uri])
        text = (r.stdout.replace(server.sock, "SOCK") + "\nexit=%d" % r.returncode)
        return text

    def test_nbdinfo_same_under_both(self):
        out = {}
        for plugin in BOTH:
            server = self.start(self.script("test-full.py"), plugin=plugin)
            out[plugin] = [self.nbdinfo(server, "--json"),
                           self.nbdinfo(server, "--json", export="beta"),
                           self.nbdinfo(server, "--list", "--json"),
                           self.nbdinfo(server, "--map"),
                           self.nbdinfo(server, "--map", export="beta"),
                           self.nbdinfo(server, "--size", export="nosuch")]
        self.assertEqual(out[PYWORKER], out[PYTHON])
        info = json.loads(out[PYWORKER][0].rsplit("\nexit=", 1)[0])
        export = info["exports"][0]
        self.assertEqual(export["export-name"], "alpha")
        self.assertEqual(export["description"], "export alpha served by a script")
        self.assertEqual((export["block_size_minimum"], export["block_size_preferred"],
                          export["block_size_maximum"]), (512, 4096, MiB))
        self.assertTrue(export["is_rotational"])
        self.assertTrue(export["can_cache"])
        self.assertFalse(export["can_fast_zero"])
        beta = json.loads(out[PYWORKER][1].rsplit("\nexit=", 1)[0])["exports"][0]
        self.assertTrue(beta["is_read_only"])
        self.assertFalse(beta["can_multi_conn"])
        self.assertEqual(beta["export-size"], 4 * MiB)
        names = [e["export-name"]
                 for e in json.loads(out[PYWORKER][2].rsplit("\nexit=", 1)[0])["exports"]]
        self.assertEqual(names[:2], ["alpha", "beta"])
        self.assertIn("1048576     1048576    3  hole,zero", out[PYWORKER][3])
        self.assertTrue(out[PYWORKER][5].endswith("exit=1"))

    def test_cache_and_fua(self):
        server = self.start(self.script("test-full.py"))
        h = server.connect(export="alpha", meta_contexts=["base:allocation"])
        h.cache(65536, 0)
        h.pwrite(b"z" * 4096, 0, harness.nbd.CMD_FLAG_FUA)
        self.assertEqual(h.pread(4096, 0), b"z" * 4096)
        seen = []
        h.block_status(3 * MiB, 0, lambda ctx, off, entries, err: seen.extend(entries))
        self.assertEqual(seen[:4], [MiB, 0, MiB, 3])


if __name__ == "__main__":
    harness.main()
