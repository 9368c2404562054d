# Export names as the script sees them. list=JSON (a list of names or [name, description]
# pairs) defines list_exports, default=NAME defines default_export; without them the script has
# neither and nbdkit's defaults apply. pread returns a JSON report of what open() saw.
import json

import nbdkit

API_VERSION = 2


def config(key, value):
    if key == "list":
        exports = [tuple(e) if isinstance(e, list) else e for e in json.loads(value)]
        globals()["list_exports"] = lambda readonly, is_tls: exports
    elif key == "default":
        globals()["default_export"] = lambda readonly, is_tls: value
    else:
        raise RuntimeError("unknown parameter " + key)


def open(readonly):
    return {"export": nbdkit.export_name()}


def get_size(h):
    return 64 * 1024


def pread(h, buf, offset, flags):
    report = json.dumps(h).encode().ljust(64 * 1024, b"\0")
    buf[:] = report[offset:offset + len(buf)]
