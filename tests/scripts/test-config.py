# Reports what the script saw: config calls in order, __name__, sys.argv, open(readonly),
# the export name. The disk's content is that report as JSON, zero-padded to 4096 bytes.
import json
import sys

import nbdkit

API_VERSION = 2

seen = {"name": __name__, "argv": list(sys.argv), "config": [], "complete": 0}


def config(key, value):
    seen["config"].append([key, value])


def config_complete():
    seen["complete"] += 1


def open(readonly):
    return {"readonly": readonly, "export": nbdkit.export_name()}


def report(h):
    d = dict(seen)
    d["readonly"] = h["readonly"]
    d["export"] = h["export"]
    return json.dumps(d).encode().ljust(4096, b"\0")


def get_size(h):
    return 4096


def pread(h, buf, offset, flags):
    buf[:] = report(h)[offset:offset + len(buf)]
