# Compatibility with nbdkit's python plugin (issue 3), for what the other files do not cover:
# defaults of absent callbacks, export names, list_exports/default_export, thread models,
# --dump-plugin/--help/--version, shebang scripts, the cache and readahead filters, the newer
# nbdkit module functions, set_error's errno mapping, and bad return values. Wherever both
# plugins can run, the same script runs under nbdkit python and pyworker in the same test.

import json
import os
import re
import shutil
import time
import unittest

import harness
from harness import PYTHON, PYWORKER, NbdkitTestCase, errno_name

MiB = 1024 * 1024
BOTH = (PYTHON, PYWORKER)


def attempt(func, *args):
    """('ok', value) or ('error', errno name) for one client call."""
    try:
        value = func(*args)
        return ("ok", bytes(value) if isinstance(value, bytearray) else value)
    except harness.nbd.Error as e:
        return ("error", errno_name(e))


def report(h, size=64 * 1024):
    return json.loads(h.pread(size, 0).rstrip(b"\0"))


def report_at(h, offset, size=64 * 1024):
    return json.loads(h.pread(size, offset).rstrip(b"\0"))


def nbdinfo_json(test, server, *args, export=""):
    from urllib.parse import quote
    uri = "nbd+unix:///%s?socket=%s" % (quote(export, safe=""), server.sock)
    r = test.run_cmd(["nbdinfo", "--json"] + list(args) + [uri])
    if r.returncode != 0:
        return ("exit", r.returncode)
    info = json.loads(r.stdout)
    for e in info.get("exports", []):
        e.pop("uri", None)
    return info


class DefaultsTest(NbdkitTestCase):
    """Flags when the script defines no can_* callback: nbdkit python's defaults."""

    def test_flags_when_callbacks_absent(self):
        out = {}
        for ops in ("", "pwrite,flush,trim,zero,cache,extents"):
            for plugin in BOTH:
                server = self.start(self.script("compat-defaults.py"), "ops=" + ops,
                                    plugin=plugin)
                out[(ops, plugin)] = nbdinfo_json(self, server)
            self.assertEqual(out[(ops, PYWORKER)], out[(ops, PYTHON)], "ops=" + ops)
        bare = out[("", PYWORKER)]["exports"][0]
        self.assertTrue(bare["is_read_only"])      # no pwrite: can_write false
        for flag in ("can_flush", "can_fua", "can_trim", "can_zero", "can_cache",
                     "can_multi_conn", "is_rotational"):
            self.assertFalse(bare[flag], flag)
        full = out[("pwrite,flush,trim,zero,cache,extents", PYWORKER)]["exports"][0]
        self.assertFalse(full["is_read_only"])
        for flag in ("can_flush", "can_fua", "can_trim", "can_zero", "can_cache"):
            self.assertTrue(full[flag], flag)   # can_fua: EMULATE (flush), can_cache: NATIVE
        self.assertFalse(full["can_fast_zero"])  # zero exists, can_fast_zero absent
        self.assertFalse(full["can_multi_conn"])
        self.assertIn("base:allocation", full["contexts"])


class ExportNameTest(NbdkitTestCase):

    NAMES = ["", "/", "with spaces", "line\nbreak", "tab\tand\u00a0nbsp",
             "caf\u00e9/\u4e2d\u6587/\U0001f600", "x" * 4096, "\u00e9" * 2048,
             "\u4e2d" * 1365 + "a"]  # the last three are exactly 4096 bytes of UTF-8

    def test_export_names_reach_export_name_exactly(self):
        for name in self.NAMES[-3:]:
            self.assertEqual(len(name.encode()), 4096)
        out = {}
        for plugin in BOTH:
            server = self.start(self.script("compat-exports.py"), plugin=plugin)
            seen = []
            for name in self.NAMES:
                try:
                    seen.append(report(server.connect(export=name))["export"])
                except harness.nbd.Error as e:
                    seen.append("error %s" % errno_name(e))
            self.close_handles()
            out[plugin] = seen
        self.assertEqual(out[PYWORKER], out[PYTHON])
        self.assertEqual(out[PYWORKER], self.NAMES)

    def test_list_exports_reach_nbdinfo_list(self):
        exports = [["", "the empty name"], "plain", ["with spaces", "a description, with: punctuation"],
                   ["caf\u00e9 \u2713", "descripci\u00f3n \u4e2d\u6587"], ["/", ""],
                   ["long", "d" * 4096]]
        out = {}
        for plugin in BOTH:
            server = self.start(self.script("compat-exports.py"), "list=" + json.dumps(exports),
                                plugin=plugin)
            out[plugin] = nbdinfo_json(self, server, "--list")
        self.assertEqual(out[PYWORKER], out[PYTHON])
        listed = [(e["export-name"], e.get("description"))
                  for e in out[PYWORKER]["exports"]]
        expected = [(e, None) if isinstance(e, str) else tuple(e) for e in exports]
        # nbdinfo shows an empty description as none
        expected = [(n, d or None) for n, d in expected]
        self.assertEqual(listed, expected)

    def test_default_export_gives_canonical_name(self):
        out = {}
        for plugin in BOTH:
            results = []
            for params in (["default=the canonical one \u2713"], []):
                server = self.start(self.script("compat-exports.py"), *params, plugin=plugin)
                h = harness.nbd.NBD()
                self.handles.append(h)
                h.set_full_info(True)
                h.connect_unix(server.sock)
                results.append((h.get_canonical_export_name(), report(h)["export"]))
                # nbdinfo --list: with no list_exports nbdkit lists the default export
                info = nbdinfo_json(self, server, "--list")
                results.append([e["export-name"] for e in info["exports"]])
                self.close_handles()
            out[plugin] = results
        self.assertEqual(out[PYWORKER], out[PYTHON])
        self.assertEqual(out[PYWORKER],
                         [("the canonical one \u2713", "the canonical one \u2713"),
                          ["the canonical one \u2713"], ("", ""), [""]])


class ThreadModelTest(NbdkitTestCase):
    """thread_model() is honoured: a script whose reads sleep 1 s serves 8 concurrent reads
    in well under 8 s under PARALLEL and SERIALIZE_REQUESTS, not under SERIALIZE_ALL. The
    bound, 70% of serialised, leaves a loaded machine room and still needs overlap."""

    def test_parallel_serves_8_reads_of_one_connection_at_once(self):
        server = self.start(self.script("test-slow.py"), "model=parallel", "delay=1")
        elapsed = harness.timed_parallel_reads(server, 1, 8)
        self.assertLess(elapsed, 0.7 * 8, "8 PARALLEL reads of 1 s took %.1f s" % elapsed)

    def test_serialize_requests_serves_8_connections_at_once(self):
        server = self.start(self.script("test-slow.py"), "model=serialize_requests",
                            "delay=1")
        elapsed = harness.timed_parallel_reads(server, 8, 1)
        self.assertLess(elapsed, 0.7 * 8, "8 SERIALIZE_REQUESTS reads took %.1f s" % elapsed)
        # ... but one connection's requests still queue
        elapsed = harness.timed_parallel_reads(server, 1, 3)
        self.assertGreaterEqual(elapsed, 2.9, "one connection's requests overlapped")

    def test_serialize_all_requests_queues_8_connections(self):
        server = self.start(self.script("test-slow.py"), "model=serialize_all_requests",
                            "delay=0.5")
        elapsed = harness.timed_parallel_reads(server, 8, 1)
        self.assertGreaterEqual(elapsed, 8 * 0.5 - 0.1, "SERIALIZE_ALL_REQUESTS overlapped")

    def test_thread_model_reported_by_dump_plugin(self):
        cases = [(["model=serialize_connections"], "serialize_connections"),
                 (["model=serialize_all_requests"], "serialize_all_requests"),
                 (["model=serialize_requests"], "serialize_requests"),
                 (["model=parallel"], "parallel"),
                 (None, "serialize_all_requests")]  # no thread_model(): the default
        for params, expected in cases:
            lines = {}
            for plugin in BOTH:
                script = (self.script("compat-defaults.py") if params is None
                          else self.script("test-slow.py"))
                r = self.run_nbdkit("--dump-plugin", script=script, params=params or [],
                                    plugin=plugin)
                self.assertEqual(r.returncode, 0, r.stderr)
                lines[plugin] = [l for l in r.stdout.splitlines()
                                 if l.startswith("thread_model=")]
            self.assertEqual(lines[PYWORKER], lines[PYTHON], params)
            self.assertEqual(lines[PYWORKER], ["thread_model=" + expected], params)


class DumpPluginTest(NbdkitTestCase):

    SCRIPT = ("import nbdkit\nAPI_VERSION = 2\n"
              "def thread_model(): return nbdkit.THREAD_MODEL_SERIALIZE_REQUESTS\n"
              "def dump_plugin():\n    print('script_a=1')\n    print('script_b=two')\n"
              "def open(readonly): return 1\n"
              "def get_size(h): return 1\n"
              "def pread(h, buf, offset, flags): pass\n")

    def dump(self, plugin, script=None):
        if script is None:
            r = self.run_nbdkit(self.plugin_path(plugin), "--dump-plugin")
        else:
            r = self.run_nbdkit("--dump-plugin", script=script, plugin=plugin)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout.splitlines()

    def test_field_order(self):
        if harness.REFERENCE:
            self.skipTest("nbdkit python prints the script's lines wherever stdio buffering "
                          "puts them")
        lines = self.dump(PYWORKER, self.script("dump.py", text=self.SCRIPT))
        keys = [l.split("=", 1)[0] for l in lines]
        # nbdkit's fields first, then the python plugin's three, then the script's output
        at = keys.index("python_version")
        self.assertEqual(keys[at:], ["python_version", "python_pep_384_abi_version",
                                     "nbdkit_python_maximum_api_version", "script_a",
                                     "script_b"], lines)
        self.assertEqual(keys[:2], ["path", "name"])
        self.assertIn("thread_model", keys[:at])
        self.assertTrue(all(k.startswith("has_") for k in keys[at - 5:at]), lines)
        self.assertRegex(lines[at], r"^python_version=3\.\d+\.\d+")
        self.assertEqual(lines[at + 1:at + 5], ["python_pep_384_abi_version=3",
                                                "nbdkit_python_maximum_api_version=2",
                                                "script_a=1", "script_b=two"])

    def test_same_fields_as_nbdkit_python(self):
        script = self.script("dump.py", text=self.SCRIPT)
        # Fields that name the plugin itself, or that only one of the two C plugins has.
        own = {"path", "name", "version", "python_version", "has_load", "has_longname",
               "magic_config_key", "struct_size"}
        out = {}
        for plugin in BOTH:
            out[plugin] = sorted(l for l in self.dump(plugin, script)
                                 if l.split("=", 1)[0] not in own)
        self.assertEqual(out[PYWORKER], out[PYTHON])

    def test_dump_plugin_without_script(self):
        # Without script= no worker runs: the plugin prints the Python version its worker was
        # built against, and the same fields as nbdkit python.
        if harness.REFERENCE:
            self.skipTest("compares pyworker with nbdkit python")
        out = {}
        for plugin in BOTH:
            out[plugin] = [l.split("=", 1)[0] for l in self.dump(plugin)
                           if l.startswith(("python_", "nbdkit_python"))]
            self.assertIn("nbdkit_python_maximum_api_version", out[plugin])
        self.assertEqual(out[PYWORKER], out[PYTHON])
        lines = self.dump(PYWORKER)
        self.assertTrue([l for l in lines if re.match(r"python_version=3\.\d+\.\d+$", l)],
                        lines)

    def test_dump_plugin_raising_is_an_error_not_a_crash(self):
        if harness.REFERENCE:
            self.skipTest("nbdkit python crashes when dump_plugin raises (DESIGN.md section 3)")
        script = self.script("compat-bad.py")
        r = self.run_nbdkit("--dump-plugin", script=script, params=["bad=dump_plugin_raises"])
        # An error, not a crash, and not a success either: exit status 1.
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("%s: dump_plugin: error:" % script, r.stderr)
        self.assertIn("RuntimeError: dump_plugin exploded 5e2a", r.stderr)
        self.assertIn("nbdkit_python_maximum_api_version=2", r.stdout.splitlines())
        self.assertIn("thread_model=parallel", r.stdout.splitlines())


class HelpVersionTest(NbdkitTestCase):

    def test_help_describes_script(self):
        r = self.run_nbdkit(self.plugin_path(), "--help")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("script=", r.stdout)
        if not harness.REFERENCE:
            self.assertIn("plugin: pyworker", r.stdout)
            self.assertIn("worker=", r.stdout)

    def test_help_describes_every_pyworker_parameter(self):
        if harness.REFERENCE:
            self.skipTest("pyworker's own parameters")
        r = self.run_nbdkit(self.plugin_path(), "--help")
        for key in ("script=", "worker=", "timeout=", "memory=", "max-restarts=",
                    "restart-window=", "recover="):
            self.assertIn(key, r.stdout)

    def test_version(self):
        nbdkit_version = self.run_cmd(["nbdkit", "--version"], check=True).stdout.strip()
        out = {}
        for plugin in BOTH:
            r = self.run_nbdkit(self.plugin_path(plugin), "--version")
            self.assertEqual(r.returncode, 0, r.stderr)
            out[plugin] = r.stdout.splitlines()
            self.assertEqual(out[plugin][0], nbdkit_version)
            self.assertEqual(len(out[plugin]), 2, out[plugin])
        if not harness.REFERENCE:
            self.assertRegex(out[PYWORKER][1], r"^pyworker \d+\.\d+\.\d+$")


class ShebangTest(NbdkitTestCase):
    """`#!/usr/sbin/nbdkit pyworker` scripts run as commands. Debian's nbdkit is /usr/bin/nbdkit
    (usrmerge), so the shebang names that. `pyworker` must resolve in nbdkit's compiled-in
    plugindir: the test runs the script in a private mount namespace (unshare -m) where a
    temporary directory holding the built plugin is bind-mounted over that plugindir — the
    installed layout, without touching the machine's. The plugin finds the built worker
    through its real path."""

    TEXT = ("#!%s %s\n"
            "import nbdkit\n"
            "size = 0\n"
            "def config(key, value):\n"
            "    global size\n"
            "    size = nbdkit.parse_size(value)\n"
            "def open(readonly): return 1\n"
            "def get_size(h): return size\n"
            "def pread(h, count, offset): return b'\\x5a' * count\n")

    def run_shebang(self, plugin):
        nbdkit = shutil.which("nbdkit", path=harness.PATH)
        name = "python" if plugin == PYTHON or harness.REFERENCE else "pyworker"
        script = self.script("shebang-%s.py" % plugin, text=self.TEXT % (nbdkit, name))
        os.chmod(script, 0o755)
        command = [script, "-U", "-", "size=3M", "--run",
                   'nbdinfo --size "$uri" && nbdsh -u "$uri" -c "print(h.pread(4, 0))"']
        if name == "pyworker" and not harness.INSTALLED:  # installed, nbdkit finds it itself
            config = self.run_cmd(["nbdkit", "--dump-config"], check=True).stdout
            plugindir = re.search(r"^plugindir=(.*)$", config, re.M).group(1)
            fake = os.path.join(self.tmp, "plugindir")
            os.mkdir(fake)
            os.symlink(harness.PLUGIN, os.path.join(fake, "nbdkit-pyworker-plugin.so"))
            command = ["unshare", "-m", "sh", "-c",
                       'mount --make-rprivate / && mount --bind "$0" "$1" && shift && '
                       'exec "$@"', fake, plugindir] + command
        return self.run_cmd(command)

    def test_shebang_script_runs_as_command(self):
        out = {}
        for plugin in BOTH:
            r = self.run_shebang(plugin)
            self.assertEqual(r.returncode, 0, r.stderr)
            out[plugin] = r.stdout
        self.assertEqual(out[PYWORKER], out[PYTHON])
        self.assertEqual(out[PYWORKER], "%d\nbytearray(b'ZZZZ')\n" % (3 * MiB))


class FilterTest(NbdkitTestCase):

    def log_lines(self, path):
        if not os.path.exists(path):
            return []
        with open(path) as f:
            return f.read().splitlines()

    def expected(self, offset, size):
        return b"".join(bytes([(o // 512 * 7 + 3) % 251]) * 512
                        for o in range(offset, offset + size, 512))

    def test_cache_filter(self):
        out = {}
        for plugin in BOTH:
            log = os.path.join(self.tmp, "cache-%s.log" % plugin)
            server = self.start(self.script("compat-cache.py"), "log=" + log,
                                "cache-on-read=true", plugin=plugin,
                                args=["--filter=cache"])
            h = server.connect()
            data = [h.pread(65536, 0), h.pread(65536, 4096), h.pread(8192, 3 * MiB + 512)]
            first = self.log_lines(log)
            data.append(h.pread(65536, 0))      # served from the cache
            h.cache(65536, 5 * MiB)             # the filter fills its cache through pread
            data.append(h.pread(65536, 5 * MiB))
            self.assertEqual(data, [self.expected(0, 65536), self.expected(4096, 65536),
                                    self.expected(3 * MiB + 512, 8192),
                                    self.expected(0, 65536), self.expected(5 * MiB, 65536)])
            self.close_handles()
            out[plugin] = (first, self.log_lines(log))
        self.assertEqual(out[PYWORKER], out[PYTHON])
        first, final = out[PYWORKER]
        self.assertTrue(first and all(l.startswith("pread ") for l in final), final)
        self.assertEqual(final[:len(first)], first)
        self.assertFalse([l for l in final[len(first):] if l.split()[1] == "0"],
                         "a cached block was read again")

    def test_readahead_filter(self):
        # readahead issues .cache for what follows each read, from its own background thread.
        out = {}
        for plugin in BOTH:
            log = os.path.join(self.tmp, "readahead-%s.log" % plugin)
            server = self.start(self.script("compat-cache.py"), "log=" + log,
                                plugin=plugin, args=["--filter=readahead"])
            h = server.connect()
            ok = True
            for i in range(24):
                ok = ok and h.pread(32768, i * 32768) == self.expected(i * 32768, 32768)
            caches = harness.wait_until(
                lambda: [l for l in self.log_lines(log) if l.startswith("cache ")], 10)
            self.close_handles()
            out[plugin] = (ok, bool(caches), all(int(l.split()[1]) > 0 for l in caches))
        self.assertEqual(out[PYWORKER], out[PYTHON])
        self.assertEqual(out[PYWORKER], (True, True, True))


class ModuleTest(NbdkitTestCase):

    def test_peer_functions_and_is_tls_over_a_unix_socket(self):
        if harness.REFERENCE:
            self.skipTest("nbdkit 1.32's python plugin has no peer_*() functions")
        server = self.start(self.script("compat-module.py"))
        h = harness.nbd.NBD()
        self.handles.append(h)
        h.set_opt_mode(True)
        h.connect_unix(server.sock)
        listed = []
        h.opt_list(lambda name, description: listed.append(name))
        self.assertEqual(listed, ["", "other"])
        h.opt_go()
        seen = report(h, 4096)
        me = {"is_tls": False, "peer_name": "", "peer_pid": os.getpid(),
              "peer_uid": os.getuid(), "peer_gid": os.getgid()}
        for where in ("preconnect", "list_exports", "default_export", "open", "pread"):
            got = dict(seen[where])
            export = got.pop("export_name")
            self.assertEqual(got, me, where)
            # nbdkit only knows the export name once the client has chosen it
            self.assertEqual(export, "" if where in ("open", "pread") else "raised RuntimeError",
                             where)

    def test_nanosleep_and_disconnect(self):
        if harness.REFERENCE:
            self.skipTest("nbdkit 1.32's python plugin has no nanosleep()/disconnect()")
        server = self.start(self.script("compat-module.py"))
        h = server.connect()
        h.pread(512, 4096)
        h.pread(512, 8192)   # disconnect() is ignored on nbdkit 1.32 (README)
        seen = report(h, 4096)
        self.assertIsNone(seen["nanosleep"][0])
        self.assertGreaterEqual(seen["nanosleep"][1], 0.29)
        self.assertGreaterEqual(seen["nanosleep1"][1], 1.29)
        self.assertIsNone(seen["disconnect"])

    def test_set_error_errnos_reach_the_client(self):
        names = ["ENOSPC", "EPERM", "EROFS", "EDQUOT", "EFBIG", "ENOMEM", "ESHUTDOWN",
                 "EOPNOTSUPP", "ENOTSUP", "EOVERFLOW", "EINVAL", "ENOENT", "EACCES", "EIO",
                 "EAGAIN", "EBADF", "ENOTCONN", "EFAULT"]
        out = {}
        for plugin in BOTH:
            server = self.start(self.script("compat-module.py"), plugin=plugin)
            h = server.connect()
            results = [attempt(h.pwrite, b"e" * 512, i * 4096) for i in range(len(names))]
            results.append(attempt(h.pwrite, b"e" * 512, 100 * 4096))  # set_error, no raise
            results.append(attempt(h.pwrite, b"e" * 512, 101 * 4096))  # raise, no set_error
            out[plugin] = results
        self.assertEqual(out[PYWORKER], out[PYTHON])
        got = dict(zip(names, (r[1] for r in out[PYWORKER])))
        # nbdkit's errno -> NBD error mapping, and libnbd's NBD error -> errno
        self.assertEqual(got["ENOSPC"], "ENOSPC")
        self.assertEqual(got["EDQUOT"], "ENOSPC")
        self.assertEqual(got["EFBIG"], "ENOSPC")
        self.assertEqual(got["EPERM"], "EPERM")
        self.assertEqual(got["EROFS"], "EPERM")
        self.assertEqual(got["ENOMEM"], "ENOMEM")
        self.assertEqual(got["ESHUTDOWN"], "ESHUTDOWN")
        self.assertEqual(got["EINVAL"], "EINVAL")
        self.assertEqual(got["ENOENT"], "EINVAL")
        self.assertEqual(got["EIO"], "EIO")
        self.assertEqual(out[PYWORKER][-2:], [("ok", None), ("error", "EIO")])


class ParseFunctionsTest(NbdkitTestCase):
    """nbdkit.parse_delay() and nbdkit.parse_probability(), which nbdkit's python plugin has
    from 1.40 and 1.36 on: pyworker serves them under every nbdkit (pure parsing, done in the
    worker), a deliberate difference from nbdkit python 1.32 (README)."""

    def test_slow_disk_parses_in_config_and_sleeps_in_pread(self):
        if harness.REFERENCE:
            self.skipTest("nbdkit 1.32's python plugin has no parse_delay()/parse_probability()")
        server = self.start(self.script("compat-parse.py"), "delay=1.5ms", "p=10%")
        h = server.connect()
        start = time.monotonic()
        self.assertEqual(len(h.pread(512, 4096)), 512)   # 100 x nanosleep(0, 1500000)
        elapsed = time.monotonic() - start
        seen = report(h, 64 * 1024)
        self.assertEqual(seen["delay"], [0, 1500000])
        self.assertEqual(seen["p"], 0.1)
        self.assertEqual(seen["types"], ["tuple", "int", "int", "float"])
        self.assertGreaterEqual(seen["slept"], 0.15)
        self.assertGreaterEqual(elapsed, 0.15)
        self.assertLess(seen["slept"], 10)

    def test_nbdkit_python_1_32_lacks_them(self):
        # The difference is deliberate (README "Differences from nbdkit python"): recorded here
        # so that an nbdkit upgrade that brings them shows up.
        r = self.run_nbdkit("-f", "-U", os.path.join(self.tmp, "sock"),
                            script=self.script("compat-parse.py"), plugin=PYTHON,
                            params=["delay=1.5ms", "p=10%"], timeout=30)
        self.assertNotEqual(r.returncode, 0, r.stderr)
        self.assertIn("AttributeError: module 'nbdkit' has no attribute 'parse_delay'", r.stderr)
        text = "import nbdkit\nprint(hasattr(nbdkit, 'parse_probability'))\n"
        r = self.run_nbdkit("--dump-plugin", script=self.script("has-parse.py", text),
                            plugin=PYTHON)
        self.assertIn("False", r.stdout + r.stderr)

    def test_bad_strings_raise_value_error_and_log_what_and_the_string(self):
        if harness.REFERENCE:
            self.skipTest("nbdkit 1.32's python plugin has no parse_delay()/parse_probability()")
        server = self.start(self.script("compat-parse.py"), "delay=0", "p=0")
        seen = report(server.connect(), 64 * 1024)
        delay_error = ["raised ValueError", "Unable to parse string as delay"]
        p_error = ["raised ValueError", "Unable to parse string as probability"]
        for s, got in seen["bad_delay"].items():
            self.assertEqual(got, delay_error, repr(s))
        self.assertEqual(seen["bad_p"].pop("1e10"), ["ok", 1e10])  # probabilities may exceed 1
        for s, got in seen["bad_p"].items():
            self.assertEqual(got, p_error, repr(s))
        self.assertEqual([o[0] for o in seen["not_str"]], ["raised TypeError"] * 3)
        self.assertEqual(seen["nul"], ["raised ValueError", "embedded null character"])
        # nbdkit_error() names `what` and the string, as nbdkit >= 1.36/1.40 do
        log = server.stderr()
        for line in ['bad-delay: could not parse delay or sleep: "-1"',
                     'bad-delay: could not parse delay or sleep: "nan"',
                     'bad-delay: could not parse delay or sleep: "12junk"',
                     'bad-delay: could not parse delay or sleep: ""',
                     'bad-delay: delay or sleep too long (the longest is 4294967295.999999999s):'
                     ' "1e10"',
                     "bad-p: could not parse '-0' as a probability",
                     "bad-p: could not parse 'inf' as a probability",
                     "bad-p: could not parse '1e400' as a probability",
                     "bad-p: could not parse '10%x' as a probability",
                     "bad-p: could not parse '' as a probability"]:
            self.assertIn(line, log)

    def test_bad_value_in_config_stops_nbdkit_with_a_clear_error(self):
        if harness.REFERENCE:
            self.skipTest("nbdkit 1.32's python plugin has no parse_delay()/parse_probability()")
        for param, lines in [("delay=-1.5ms", ['delay: could not parse delay or sleep: "-1.5ms"',
                                               "ValueError: Unable to parse string as delay"]),
                             ("p=NaN", ["p: could not parse 'NaN' as a probability",
                                        "ValueError: Unable to parse string as probability"])]:
            r = self.run_nbdkit("-f", "-U", os.path.join(self.tmp, "sock"),
                                script=self.script("compat-parse.py"), params=[param],
                                timeout=30)
            self.assertNotEqual(r.returncode, 0, r.stderr)
            for line in lines:
                self.assertIn(line, r.stderr, param)
            self.assertFalse(os.path.exists(os.path.join(self.tmp, "sock")))


class NewerModuleFunctionsTest(NbdkitTestCase):
    """The rest of what nbdkit's python plugin gained after 1.32 (nbdkit 1.42's module): served
    where the worker can do it honestly, a clear error naming the nbdkit release otherwise."""

    NEWER = {"disconnect", "is_tls", "nanosleep", "parse_delay", "parse_probability",
             "peer_gid", "peer_pid", "peer_security_context", "peer_tls_dn",
             "peer_tls_issuer_dn", "peer_uid", "read_password", "stdio_safe"}
    PYWORKER_ONLY = {"peer_name"}  # no nbdkit python has it (its source says why)

    def test_module_is_nbdkit_1_32s_plus_the_newer_functions(self):
        text = ("import nbdkit\n"
                "def dump_plugin():\n"
                "    print('names=' + ','.join(sorted(n for n in dir(nbdkit)\n"
                "                                     if not n.startswith('_'))))\n"
                "def open(readonly): return 1\n"
                "def get_size(h): return 0\n"
                "def pread(h, count, offset): return b''\n")
        names = {}
        for plugin in BOTH:
            r = self.run_nbdkit("--dump-plugin", script=self.script("names.py", text),
                                plugin=plugin)
            self.assertEqual(r.returncode, 0, r.stderr)
            line = [l for l in r.stdout.splitlines() if l.startswith("names=")][0]
            names[plugin] = set(line[len("names="):].split(","))
        if harness.REFERENCE:
            return
        # The deliberate difference (README): nbdkit python 1.32 lacks every newer function.
        self.assertEqual(names[PYWORKER] - names[PYTHON], self.NEWER | self.PYWORKER_ONLY)
        self.assertEqual(names[PYTHON] - names[PYWORKER], set())

    def start_newer(self, *params):
        return self.start(self.script("compat-newer.py"), *params)

    def test_read_password_from_a_file_and_as_given(self):
        if harness.REFERENCE:
            self.skipTest("nbdkit 1.32's python plugin has no read_password()")
        path = os.path.join(self.tmp, "password.txt")
        with open(path, "w") as f:
            f.write("testing 1 2 3\nsecond line\n")
        for value, expected in [("+" + path, b"testing 1 2 3"), ("s3cret", b"s3cret")]:
            h = self.start_newer("password=" + value).connect()
            self.assertEqual(h.pread(len(expected) + 1, 0), expected + b"\0")
            seen = report_at(h, MiB)
            self.assertEqual(seen["password_type"], "bytes")

    def test_read_password_forms_the_worker_cannot_serve(self):
        if harness.REFERENCE:
            self.skipTest("nbdkit 1.32's python plugin has no read_password()")
        for value, line in [("-", "stdin is not available for reading password"),
                            ("-3", "cannot use password -FD under pyworker"),
                            ("+/nonexistent/pw", "open /nonexistent/pw: No such file or directory")]:
            r = self.run_nbdkit("-f", "-U", os.path.join(self.tmp, "sock"),
                                script=self.script("compat-newer.py"),
                                params=["password=" + value], timeout=30)
            self.assertNotEqual(r.returncode, 0, r.stderr)
            self.assertIn(line, r.stderr, value)
            self.assertIn("ValueError: Unable to parse parameter as a password", r.stderr)

    def test_stdio_safe_and_what_nbdkit_1_32_cannot_tell(self):
        if harness.REFERENCE:
            self.skipTest("nbdkit 1.32's python plugin has none of these")
        server = self.start_newer()
        seen = report_at(server.connect(), MiB)
        self.assertIs(seen["stdio_safe"], False)
        self.assertEqual(seen["config_peer"],
                         [["raised ValueError", "Unable to get client " + which]
                          for which in ("pid", "uid", "gid")])
        self.assertIn("no connection in this thread", server.stderr())
        got = seen["open"]
        self.assertEqual(got.pop("stdio_safe"), ["ok", False])
        releases = {"peer_security_context": ("security context", "1.36"),
                    "peer_tls_dn": ("TLS DN", "1.40"),
                    "peer_tls_issuer_dn": ("TLS DN", "1.40")}
        for name, (what, release) in releases.items():
            kind, message = got[name]
            self.assertEqual(kind, "raised ValueError", name)
            self.assertIn(what, message, name)
            self.assertIn("nbdkit.%s() needs nbdkit >= %s" % (name, release), message)


class BadReturnsTest(NbdkitTestCase):
    """Each bad return value: a clear error naming script, callback and problem; nbdkit keeps
    serving. Compared with nbdkit python wherever that does not crash."""

    def logged(self, server, *texts):
        if harness.REFERENCE:
            return ""  # these messages are pyworker's: nbdkit python's are vaguer
        harness.wait_until(lambda: all(t in server.stderr() for t in texts), 5)
        log = server.stderr()
        for t in texts:
            self.assertIn(t, log)
        return log

    def assertStillServing(self, server):
        self.assertIsNone(server.proc.poll(), "nbdkit exited:\n" + server.stderr())
        self.assertEqual(server.connect(export="good").pread(4, 0), b"gggg")

    def outcomes(self, plugins, exports, probe, params=()):
        """{plugin: [probe(server, export) for each export]} with the good export working
        afterwards; returns the pyworker server too."""
        out = {}
        servers = {}
        for plugin in plugins:
            server = self.start(self.script("compat-bad.py"), *params, plugin=plugin)
            servers[plugin] = server
            out[plugin] = [probe(server, e) for e in exports]
            self.assertStillServing(server)
        if len(plugins) == 2:
            self.assertEqual(out[PYWORKER], out[PYTHON])
        return out, servers[PYWORKER]

    def connect_outcome(self, server, export):
        try:
            server.connect(export=export)
            return "connected"
        except harness.nbd.Error:
            return "refused"

    def test_get_size_returning_a_string(self):
        out, server = self.outcomes(BOTH, ["get_size_str"], self.connect_outcome)
        self.assertEqual(out[PYWORKER], ["refused"])
        self.logged(server, "%s: get_size: error: get_size returned 'str', expected int"
                    % server.script)

    def test_block_size_list_and_out_of_range(self):
        exports = ["block_size_list", "block_size_two", "block_size_too_big"]
        out, server = self.outcomes(BOTH, exports, self.connect_outcome)
        self.assertEqual(out[PYWORKER], ["refused"] * 3)
        prefix = "%s: block_size: error: block_size returned " % server.script
        self.logged(server,
                    prefix + "'list', expected a tuple (minimum, preferred, maximum)",
                    prefix + "a tuple of 2 items, expected a tuple",
                    prefix + "4294967296 as the maximum, expected an int between 0 and "
                    "4294967295")

    def test_block_size_breaking_nbdkit_rules(self):
        out, server = self.outcomes(BOTH, ["block_size_not_power_of_2"], self.connect_outcome)
        self.assertEqual(out[PYWORKER], ["refused"])
        self.logged(server, "%s: block_size: error: block_size returned (3, 4096, 1048576): "
                    "the minimum must be a power of 2" % server.script)

    def extents_outcome(self, server, export):
        h = server.connect(export=export, meta_contexts=["base:allocation"])
        return attempt(h.block_status, MiB, 0, lambda *args: 0)

    def test_extents_empty_or_not_contiguous(self):
        exports = ["extents_empty", "extents_gap", "extents_backwards"]
        out, server = self.outcomes(BOTH, exports, self.extents_outcome)
        self.assertEqual(out[PYWORKER], [("error", "EIO")] * 3)
        # nbdkit python's own words (issue 21): its loop's, then nbdkit_add_extent()'s.
        self.logged(server, "extents method cannot return an empty list",
                    "nbdkit_add_extent: extents must be added in ascending order and must be "
                    "contiguous", "nbdkit_add_extent: first extent must not be > start (0)")

    def test_list_exports_not_iterable(self):
        def listing(server, _):
            r = self.run_cmd(["nbdinfo", "--list", server.uri])
            return r.returncode
        out, server = self.outcomes(BOTH, [None], listing, params=["bad=list_exports_int"])
        self.assertNotEqual(out[PYWORKER], [0])
        self.logged(server, "list_exports method did not return something which is iterable")

    def test_lone_surrogate_in_export_names(self):
        if harness.REFERENCE:
            self.skipTest("nbdkit python crashes on a lone surrogate (DESIGN.md section 3)")
        cases = [("list_exports_surrogate", "list_exports", "an export name 'bad\\udc80name'"),
                 ("description_surrogate", "list_exports",
                  "an export description 'bad\\ud800description'"),
                 ("default_export_surrogate", "default_export",
                  "the export name '\\ud800default'")]
        for bad, callback, what in cases:
            server = self.start(self.script("compat-bad.py"), "bad=" + bad)
            if callback == "list_exports":
                r = self.run_cmd(["nbdinfo", "--list", server.uri])
                self.assertNotEqual(r.returncode, 0, r.stdout)
            else:
                self.assertEqual(self.connect_outcome(server, ""), "refused")
            self.logged(server, "%s: %s: error: %s returned %s that is not valid UTF-8"
                        % (server.script, callback, callback, what))
            self.assertStillServing(server)

    def test_can_fua_and_can_cache_junk(self):
        if harness.REFERENCE:
            self.skipTest("nbdkit python accepts any can_fua/can_cache answer silently")
        exports = ["can_fua_int", "can_fua_str", "can_cache_junk"]
        out, server = self.outcomes([PYWORKER], exports, self.connect_outcome)
        self.assertEqual(out[PYWORKER], ["refused"] * 3)
        s = server.script
        self.logged(server,
                    "%s: can_fua: error: can_fua returned 7, expected nbdkit.FUA_NONE, "
                    "FUA_EMULATE or FUA_NATIVE" % s,
                    "%s: can_fua: error: can_fua returned 'str', expected nbdkit.FUA_NONE" % s,
                    "%s: can_cache: error: can_cache returned -1, expected nbdkit.CACHE_NONE"
                    % s)

    def test_thread_model_string(self):
        if harness.REFERENCE:
            self.skipTest("nbdkit python accepts any thread_model answer silently")
        script = self.script("compat-bad.py")
        r = self.run_nbdkit("-f", "-U", os.path.join(self.tmp, "sock"), script=script,
                            params=["bad=thread_model_str"], timeout=30)
        self.assertGreater(r.returncode, 0, r.stderr)
        self.assertIn("%s: thread_model: error: thread_model returned 'str', expected "
                      "nbdkit.THREAD_MODEL_SERIALIZE_CONNECTIONS" % script, r.stderr)

    def test_no_script_with_dump_plugin_and_help(self):
        # `nbdkit pyworker` alone is covered in test_errors; these must not crash either.
        for option in ("--dump-plugin", "--help"):
            r = self.run_nbdkit(self.plugin_path(), option)
            self.assertEqual(r.returncode, 0, option + ":\n" + r.stderr)


RAMDISK = """\
import errno, sys
import nbdkit
API_VERSION = 2
SIZE = 1024 * 1024
disk = bytearray(SIZE)
class Index:
    def __init__(self, value): self.value = value
    def __index__(self): return self.value
def open(readonly): return {}
def get_size(h): return SIZE
def pread(h, buf, offset, flags): buf[:] = disk[offset:offset + len(buf)]
def pwrite(h, buf, offset, flags): disk[offset:offset + len(buf)] = buf
def zero(h, count, offset, flags): disk[offset:offset + count] = bytes(count)
"""


class SameAnswersTest(NbdkitTestCase):
    """Issue 21: the differences 1-8 that a differential run found, each under nbdkit python
    and pyworker with the same client (tests/differential/ runs hundreds more)."""

    def both(self, name, extra, probe, params=()):
        """{plugin: probe(server)} for the base RAM disk plus `extra`; asserts they agree."""
        out = {}
        for plugin in BOTH:
            server = self.start(self.script(name + ".py", RAMDISK + extra), *params,
                                plugin=plugin)
            out[plugin] = probe(server)
            self.close_handles()
        self.assertEqual(out[PYWORKER], out[PYTHON])
        return out[PYWORKER]

    def block_status(self, server, flags=0):
        h = server.connect(meta_contexts=["base:allocation"])
        got = []
        h.block_status(MiB, 0, lambda ctx, off, entries, err: got.append(list(entries)) or 0,
                       flags)
        return got

    def test_1_can_fast_zero_defaults_to_not_can_zero(self):
        def probe(server):
            h = server.connect()
            return h.can_zero(), h.can_fast_zero(), attempt(h.zero, 4096, 0,
                                                            harness.nbd.CMD_FLAG_FAST_ZERO)
        # can_zero False: nbdkit would write zeroes slowly, so a fast zero fails at once.
        self.assertEqual(self.both("fast-zero-1", "def can_zero(h): return False\n", probe),
                         (True, True, ("error", "ENOTSUP")))
        # No zero but can_zero True: zero is "native" (it falls back), fast zero not offered.
        self.assertEqual(self.both("fast-zero-2", "del zero\ndef can_zero(h): return True\n",
                                   probe),
                         (True, False, ("error", "EINVAL")))  # refused by the client

    def test_2_can_extents_without_extents_is_all_data(self):
        got = self.both("extents-absent", "def can_extents(h): return True\n",
                        self.block_status)
        self.assertEqual(got, [[MiB, 0]])

    def test_3_bytes_as_names_and_descriptions(self):
        extra = ("def default_export(readonly, is_tls): return b'disk'\n"
                 "def export_description(h): return b'bdesc'\n"
                 "def list_exports(readonly, is_tls):\n"
                 "    return [b'bx', (b'by', b'dy'), b'cut\\x00here']\n")

        def probe(server):
            info = nbdinfo_json(self, server, "--list")
            h = harness.nbd.NBD()
            self.handles.append(h)
            h.set_full_info(True)
            h.connect_unix(server.sock)
            return ([(e["export-name"], e.get("description")) for e in info["exports"]],
                    h.get_canonical_export_name(), h.get_export_description())
        self.assertEqual(self.both("bytes", extra, probe),
                         ([("bx", None), ("by", "dy"), ("cut", None)], "disk", "bdesc"))

    def test_4_generators_raising_part_way(self):
        extra = ("def extents(h, count, offset, flags):\n"
                 "    yield (0, SIZE, 3)\n    raise RuntimeError('part-way')\n"
                 "def list_exports(readonly, is_tls):\n"
                 "    yield 'a'\n    raise RuntimeError('part-way')\n")
        listing = lambda server: nbdinfo_json(self, server, "--list")["exports"]
        got = self.both("generators", extra, lambda s: (self.block_status(s), listing(s)))
        self.assertEqual(got[0], [[MiB, 3]])
        self.assertEqual([e["export-name"] for e in got[1]], ["a"])
        # Raising before the first item: an empty list of exports.
        got = self.both("generators-at-once", "def list_exports(readonly, is_tls):\n"
                        "    raise RuntimeError('at once')\n    yield 'a'\n",
                        lambda s: self.run_cmd(["nbdinfo", "--list", s.uri]).stdout)
        self.assertNotIn("export=", got)

    def test_5_extent_types_and_ranges_as_nbdkit_handles_them(self):
        cases = {"[(0, 4096, 4), (4096, SIZE - 4096, 8)]": [[4096, 0, MiB - 4096, 0]],
                 "[(0, 4096, 2**32 + 3), (4096, SIZE - 4096, 7)]": [[4096, 3, MiB - 4096, 3]],
                 "[(0, 2**63, 0), (2**63, 2**63, 1)]": [[MiB, 0]],
                 "[(0, 4096, 1), (4096, 2**64 - 1, 0)]": [[4096, 1, 2**32 - 1, 0]]}
        for i, (value, expected) in enumerate(cases.items()):
            got = self.both("extents-%d" % i, "def extents(h, count, offset, flags):\n"
                            "    return %s\n" % value, self.block_status)
            self.assertEqual(got, expected, value)

    def test_6_objects_with_index_are_ints(self):
        extra = ("API_VERSION = Index(2)\n"
                 "def get_size(h): return Index(8192)\n"
                 "def thread_model(): return Index(nbdkit.THREAD_MODEL_PARALLEL)\n"
                 "def flush(h, flags): pass\n"
                 "def can_fua(h): return Index(nbdkit.FUA_NATIVE)\n"
                 "def block_size(h): return (Index(512), 4096, Index(65536))\n")

        def probe(server):
            info = nbdinfo_json(self, server)["exports"][0]
            return {k: info[k] for k in ("export-size", "can_fua", "block_size_minimum",
                                         "block_size_maximum")}
        got = self.both("index", extra, probe)
        self.assertEqual(got, {"export-size": 8192, "can_fua": True, "block_size_minimum": 512,
                               "block_size_maximum": 65536})
        r = self.run_nbdkit("--dump-plugin", script=self.script("index-dump.py", RAMDISK + extra))
        self.assertIn("thread_model=parallel", r.stdout)

    def test_7_sys_exit_at_load_is_nbdkit_exit_status(self):
        for code, status, shown in (("7", 7, None), ("", 0, None), ("'bye'", 1, "bye")):
            out = {}
            for plugin in BOTH:
                script = self.script("exit.py", RAMDISK + "sys.exit(%s)\n" % code)
                r = self.run_nbdkit("-U", "-", "--run", "nbdinfo --size $uri", script=script,
                                    plugin=plugin, timeout=30)
                out[plugin] = (r.returncode, r.stderr.replace(script, "SCRIPT"), r.stdout)
            self.assertEqual(out[PYWORKER], out[PYTHON], code)
            self.assertEqual(out[PYWORKER][0], status, code)
            if shown:
                self.assertEqual(out[PYWORKER][1].strip(), shown)

    def test_8_logs(self):
        # The EOPNOTSUPP fallback is silent; export_name() with no export chosen logs nbdkit's
        # complaint with the connection's prefix; a load failure shows the traceback first.
        extra = ("def zero(h, count, offset, flags):\n"
                 "    nbdkit.set_error(errno.EOPNOTSUPP)\n    raise RuntimeError('fallback')\n"
                 "def list_exports(readonly, is_tls):\n"
                 "    try:\n        nbdkit.export_name()\n    except RuntimeError:\n"
                 "        pass\n    return ['a']\n")

        def probe(server):
            h = server.connect()
            h.zero(4096, 0)
            nbdinfo_json(self, server, "--list")
            harness.wait_until(lambda: "no connection" in server.stderr(), 5)
            return re.sub(r"(python|pyworker)\[", "PLUGIN[", server.stderr())
        log = self.both("logs", extra, probe)
        self.assertNotIn("error: SCRIPT", log)
        self.assertNotIn("fallback", log)
        self.assertIn("PLUGIN[2]: error: no connection in this thread", log)
        out = {}
        for plugin in BOTH:
            script = self.script("raises.py", RAMDISK + "raise RuntimeError('at load')\n")
            r = self.run_nbdkit("-U", "-", "--run", "true", script=script, plugin=plugin,
                                timeout=30)
            out[plugin] = (r.returncode, r.stderr.replace(script, "SCRIPT"))
        self.assertEqual(out[PYWORKER], out[PYTHON])
        self.assertTrue(out[PYWORKER][1].startswith("Traceback (most recent call last):"))
        self.assertTrue(out[PYWORKER][1].endswith(
            "RuntimeError: at load\nnbdkit: error: SCRIPT: error running this script\n"))

    def test_8_close_error_has_the_connection_prefix(self):
        # close() runs on a lane from nbdkit's close callback, so its error is logged on the
        # connection's thread, with its "pyworker[N]:" prefix.
        def probe(server):
            server.connect()
            self.close_handles()
            harness.wait_until(lambda: "boom" in server.stderr(), 5)
            return re.sub(r"(python|pyworker)\[", "PLUGIN[", server.stderr())
        log = self.both("close", "def close(h): raise RuntimeError('boom')\n", probe)
        self.assertIn("PLUGIN[1]: error:", log)


class MainThreadTest(NbdkitTestCase):
    """Process-wide callbacks run on the main thread, as in-process; a threading module first
    imported in a connection callback does not keep the interpreter from finalizing."""

    def test_signal_handler_in_config_and_late_threading_import(self):
        out = {}
        for plugin in BOTH:
            log = os.path.join(self.tmp, "main-thread-%s.log" % plugin)
            server = self.start(self.script("compat-main-thread.py"), "log=" + log,
                                plugin=plugin)
            h = server.connect()
            self.assertEqual(len(h.pread(512, 0)), 512)
            self.close_handles()
            self.assertEqual(server.stop(), 0, server.stderr())
            with open(log) as f:
                out[plugin] = f.read().splitlines()
        self.assertEqual(out[PYWORKER], out[PYTHON])
        self.assertEqual(out[PYWORKER], ["config_complete set a signal handler",
                                         "atexit MainThread"])


if __name__ == "__main__":
    harness.main()
