# The nbdkit module functions that nbdkit's python plugin gained after 1.32 besides the parsers
# (compat-parse.py): read_password (password=), stdio_safe, peer_security_context, peer_tls_dn,
# peer_tls_issuer_dn, and peer_pid/uid/gid where nbdkit cannot tell. The export is the password;
# pread at offset 1 MiB returns the record as JSON.
import json

import nbdkit

API_VERSION = 2

password = b""
seen = {}


def outcome(func, *args):
    try:
        return ["ok", func(*args)]
    except Exception as e:
        return ["raised " + type(e).__name__, str(e)]


def config(key, value):
    global password
    if key == "password":
        password = nbdkit.read_password(value)
        seen["password_type"] = type(password).__name__
    else:
        raise RuntimeError("unknown parameter " + key)


def config_complete():
    seen["stdio_safe"] = nbdkit.stdio_safe()
    seen["config_peer"] = [outcome(getattr(nbdkit, name))
                           for name in ("peer_pid", "peer_uid", "peer_gid")]


def open(readonly):
    seen["open"] = {name: outcome(getattr(nbdkit, name))
                    for name in ("stdio_safe", "peer_security_context", "peer_tls_dn",
                                 "peer_tls_issuer_dn")}
    return 1


def get_size(h):
    return 1024 * 1024 + 64 * 1024


def pread(h, buf, offset, flags):
    if offset >= 1024 * 1024:
        data = json.dumps(seen).encode()
    else:
        data = password
    buf[:] = data.ljust(len(buf), b"\0")[:len(buf)]
