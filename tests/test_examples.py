# The examples, and a script defining every callback, under nbdkit's own python plugin and
# under pyworker: clients must see the same sizes, data, flags and errors.

import json
import os
import re
import shutil

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
