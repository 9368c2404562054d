#!/usr/bin/python3
# The differential suite (issue 21): every script variant of variants.py is served by
# `nbdkit python` (the reference, nbdkit 1.32's in-process plugin) and by pyworker, each
# driven by the same client (libnbd's nbd module: the export list, every flag and block size,
# reads, writes with and without FUA, flush, trim, zero with NO_HOLE/FAST_ZERO/FUA, cache,
# block status with and without REQ_ONE, and the script's own journal of the callbacks it
# saw). What the client saw, nbdkit's exit status and its normalised log must be the same,
# or the variant must be listed in deliberate.py with the reason.
#
#   /usr/bin/python3 tests/differential/run.py            # the normal run (CI)
#   /usr/bin/python3 tests/differential/run.py --full     # thousands of variants
#   /usr/bin/python3 tests/differential/run.py -k 'return/extents/*' --show   # details
#
# Paths come from tests/harness.py (PYWORKER_PLUGIN etc., defaulting to the build tree).

import argparse
import concurrent.futures
import functools
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

import harness  # noqa: E402
import variants  # noqa: E402
from deliberate import DELIBERATE  # noqa: E402

nbd = harness.nbd
PLUGINS = ("python", "pyworker")
LIFETIME = 30      # seconds any one nbdkit may live (a watchdog kills it)
STARTUP = 20       # seconds for nbdkit to listen or exit
# After the client has gone: close() runs on nbdkit's side before SIGTERM (longer on a slow
# machine: harness.scaled). Paid once per variant and server (over a thousand times a run).
SETTLE = harness.scaled(0.15)


def run_prefix():
    """The temp directories' prefix for a run from this process: a test can tell its own
    run's workers (their LABEL is the script's path) from another run's."""
    return "pyworker-diff-%d-" % os.getpid()


def digest(value):
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value)
        if len(value) <= 32:
            return value.hex()
        return "%d bytes sha1 %s" % (len(value), hashlib.sha1(value).hexdigest()[:16])
    return value


def attempt(fn, *args):
    try:
        return ["ok", digest(fn(*args))]
    except nbd.Error as e:
        return ["error", harness.errno_name(e)]
    except Exception as e:  # a client-side refusal that is not an nbd.Error
        return ["exception", type(e).__name__]


def probe(sock):
    """Everything one client sees of the server on `sock`, as JSON-able data."""
    seen = {}
    h = nbd.NBD()
    h.set_opt_mode(True)
    names = []
    seen["list-connect"] = attempt(h.connect_unix, sock)
    if seen["list-connect"][0] == "ok":
        seen["list"] = attempt(lambda: h.opt_list(lambda n, d: names.append([n, d]) or 0))
        seen["list-names"] = names
        seen["list-abort"] = attempt(h.opt_abort)
    h = None  # closes the connection

    h = nbd.NBD()
    h.set_full_info(True)
    h.add_meta_context("base:allocation")
    seen["connect"] = attempt(h.connect_unix, sock)
    if seen["connect"][0] == "error" and seen["connect"][1] in (None, "EINVAL"):
        # A server that drops the connection during the handshake (preconnect failing): what
        # libnbd makes of it depends on timing.
        seen["connect"] = ["error", "dropped"]
    if seen["connect"][0] != "ok":
        h = None
        return seen
    for query in ("get_size", "get_canonical_export_name", "get_export_description",
                  "is_read_only", "can_flush", "can_fua", "can_trim", "can_zero",
                  "can_fast_zero", "can_cache", "can_multi_conn", "is_rotational"):
        seen[query] = attempt(getattr(h, query))
    seen["base:allocation"] = attempt(h.can_meta_context, "base:allocation")
    for which, name in ((nbd.SIZE_MINIMUM, "min"), (nbd.SIZE_PREFERRED, "preferred"),
                        (nbd.SIZE_MAXIMUM, "max")):
        seen["block_size_" + name] = attempt(h.get_block_size, which)
    size = seen["get_size"][1] if seen["get_size"][0] == "ok" else 0

    def block_status(count, offset, flags=0):
        got = []
        h.block_status(count, offset,
                       lambda ctx, off, entries, err: got.append([ctx, off, list(entries)]) or 0,
                       flags)
        return got

    ops = [
        ("pread", h.pread, 4096, 0),
        ("pread-end", h.pread, 512, max(size - 512, 0)),
        ("pwrite", h.pwrite, b"\xaa" * 4096, 4096),
        ("pwrite-fua", h.pwrite, b"\x55" * 4096, 8192, nbd.CMD_FLAG_FUA),
        ("pread-written", h.pread, 16384, 0),
        ("flush", h.flush),
        ("trim", h.trim, 4096, 4096),
        ("trim-fua", h.trim, 4096, 8192, nbd.CMD_FLAG_FUA),
        ("zero", h.zero, 4096, 12288),
        ("zero-no-hole", h.zero, 4096, 12288, nbd.CMD_FLAG_NO_HOLE),
        ("zero-fast", h.zero, 4096, 12288, nbd.CMD_FLAG_FAST_ZERO),
        ("zero-fua", h.zero, 4096, 12288, nbd.CMD_FLAG_FUA),
        ("pread-zeroed", h.pread, 16384, 0),
        ("cache", h.cache, 4096, 0),
        ("block-status", block_status, size, 0),
        ("block-status-req-one", block_status, size, 0, nbd.CMD_FLAG_REQ_ONE),
        ("block-status-middle", block_status, 65536, 4096),
    ]
    for op in ops:
        seen[op[0]] = attempt(*op[1:])
    if size >= 4096:
        # The script's journal of the callbacks it saw, with their flags.
        seen["journal"] = attempt(lambda: h.pread(4096, size - 4096).rstrip(b"\0")
                                  .decode(errors="replace"))
    seen["shutdown"] = attempt(h.shutdown)
    h = None  # closes the connection
    return seen


def normalise(log, script):
    lines = []
    for line in log.splitlines():
        line = line.replace(script, "SCRIPT")
        line = re.sub(r"^nbdkit: (python|pyworker)(\[\d+\])?:", r"nbdkit: PLUGIN\2:", line)
        line = re.sub(r"^pyworker\[\d+\]: ", "", line)  # the script's own output, relayed
        line = re.sub(r"0x[0-9a-f]{6,}", "0xADDR", line)
        line = line.rstrip()
        if line:
            lines.append(line)
    return lines


def never_connected(client):
    return all(client.get(step, ["error"])[0] != "ok" for step in ("list-connect", "connect"))


def serve(plugin, variant, directory):
    """Serve `variant` with `plugin`: (exit status, client view, normalised log)."""
    script = os.path.join(directory, "script.py")
    with open(script, "w") as f:
        f.write(variant.text())
    sock = os.path.join(directory, plugin + ".sock")
    logpath = os.path.join(directory, plugin + ".log")
    target = harness.PLUGIN if plugin == "pyworker" else "python"
    argv = ["nbdkit", "-f", "-U", sock, target, "script=" + script] + variant.config
    path = harness.PATH
    if plugin == "python":
        # The reference runs as installed, also in the sanitized run: the variants where it
        # crashes (lone surrogates) must not count as sanitizer reports against pyworker.
        sanitizer = os.path.join(harness.HERE, "sanitizer")
        path = ":".join(p for p in path.split(":") if p != sanitizer)
    env = dict(os.environ, PATH=path, PYTHONUNBUFFERED="1")
    env.pop("LIBNBD_DEBUG", None)
    with open(logpath, "wb") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                                preexec_fn=harness._die_with_parent)
    watchdog = threading.Timer(LIFETIME, proc.kill)
    watchdog.start()
    try:
        deadline = time.monotonic() + STARTUP
        while not harness.listening(sock) and proc.poll() is None and \
                time.monotonic() < deadline:
            time.sleep(0.005)
        client = None
        if proc.poll() is None:
            client = probe(sock)
            time.sleep(SETTLE)
            if proc.poll() is not None and never_connected(client):
                # The server failed after binding its socket (after_fork raising): whether the
                # probe came before its exit is timing, and pyworker's after_fork takes a worker
                # start longer than the in-process one. A server that never served is None.
                client = None
            proc.send_signal(signal.SIGTERM)
        try:
            status = proc.wait(LIFETIME)
        except subprocess.TimeoutExpired:
            proc.kill()
            status = "killed: no exit %d s after SIGTERM" % LIFETIME
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with open(logpath, errors="replace") as f:
        log = normalise(f.read(), script)
    return {"status": status, "client": client, "log": log}


def run_variant(variant, prefix, keep=None):
    directory = tempfile.mkdtemp(prefix=prefix)
    try:
        results = {p: serve(p, variant, directory) for p in PLUGINS}
    finally:
        if keep is None:
            shutil.rmtree(directory, ignore_errors=True)
    ref, ours = results["python"], results["pyworker"]
    differs = [aspect for aspect in ("status", "client", "log") if ref[aspect] != ours[aspect]]
    return variant.name, differs, results


def matches(name, pattern):
    """Shell-like, but only "*" is special: variant names are full of brackets."""
    return re.fullmatch(".*".join(re.escape(part) for part in pattern.split("*")), name)


def deliberate_for(name, differs):
    for entry in DELIBERATE:
        if any(matches(name, p) for p in entry["variants"]):
            if set(differs) <= set(entry["aspects"]):
                return entry
    return None


def show(name, differs, results, out):
    out.write("--- %s: differs in %s\n" % (name, ", ".join(differs) or "nothing"))
    ref, ours = results["python"], results["pyworker"]
    for aspect in ("status", "client", "log"):
        if aspect not in differs:
            continue
        if aspect == "client" and ref["client"] and ours["client"]:
            keys = [k for k in sorted(set(ref["client"]) | set(ours["client"]))
                    if ref["client"].get(k) != ours["client"].get(k)]
            if len(keys) > 6:
                out.write("  client: %d answers differ, e.g. %s\n" % (len(keys), ", ".join(keys[:6])))
            for key in keys[:6]:
                a, b = ref["client"].get(key), ours["client"].get(key)
                if True:
                    out.write("  client %s:\n    python:   %s\n    pyworker: %s\n"
                              % (key, json.dumps(a)[:400], json.dumps(b)[:400]))
        else:
            out.write("  %s:\n    python:   %s\n    pyworker: %s\n"
                      % (aspect, json.dumps(ref[aspect])[:1500], json.dumps(ours[aspect])[:1500]))


def main(argv=None, out=sys.stdout):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--full", action="store_true", help="thousands of variants")
    parser.add_argument("--jobs", type=int, default=3, help="variants at once (default 3)")
    parser.add_argument("-k", dest="patterns", action="append", default=[],
                        help="only variants matching this pattern ('*' is the only wildcard; "
                             "repeatable)")
    parser.add_argument("--show", action="store_true",
                        help="show every difference, deliberate ones too")
    parser.add_argument("--list", action="store_true", help="list the variants and exit")
    parser.add_argument("--script", metavar="NAME", help="print the script of variant NAME")
    args = parser.parse_args(argv)

    chosen = [v for v in variants.generate(args.full)
              if not args.patterns or any(matches(v.name, p) for p in args.patterns)]
    if args.list:
        for v in chosen:
            out.write(v.name + "\n")
        return 0
    if args.script:
        out.write([v for v in chosen if v.name == args.script][0].text())
        return 0

    started = time.monotonic()
    agree, expected, unexpected = [], {}, []
    with concurrent.futures.ProcessPoolExecutor(max_workers=args.jobs) as pool:
        run = functools.partial(run_variant, prefix=run_prefix())
        for name, differs, results in pool.map(run, chosen, chunksize=1):
            if not differs:
                agree.append(name)
                continue
            entry = deliberate_for(name, differs)
            if entry:
                expected.setdefault(entry["name"], []).append(name)
                if args.show:
                    show(name, differs, results, out)
            else:
                unexpected.append(name)
                show(name, differs, results, out)
            out.flush()
    elapsed = time.monotonic() - started
    out.write("\ndeliberate differences (deliberate.py):\n")
    for entry in DELIBERATE:
        out.write("  %-40s %d variant(s)\n" % (entry["name"], len(expected.get(entry["name"], []))))
    out.write("%d variants in %.0f s (%d jobs): %d agree, %d deliberate differences, "
              "%d unexpected differences\n"
              % (len(chosen), elapsed, args.jobs, len(agree),
                 sum(len(v) for v in expected.values()), len(unexpected)))
    for name in unexpected:
        out.write("UNEXPECTED: %s\n" % name)
    return 1 if unexpected else 0


if __name__ == "__main__":
    sys.exit(main())
