# nbdkit.parse_delay() and nbdkit.parse_probability() (nbdkit >= 1.40 and >= 1.36; pyworker
# serves them under every nbdkit): a slow-disk simulator that parses delay= and p= in config and
# sleeps with the parsed pair in pread (at offset 4096: SLEEPS times), and that records in
# config_complete what bad strings raise. pread at 0 returns the record as JSON.
import json
import time

import nbdkit

API_VERSION = 2
SLEEPS = 100

BAD = ["-1", "-0", "nan", "inf", "1e400", "1e10", "12junk", "10%x", "1ms ", "", "1:0", "1::2"]

delay = None
p = None
seen = {}


def outcome(func, *args):
    try:
        return ["ok", func(*args)]
    except Exception as e:
        return ["raised " + type(e).__name__, str(e)]


def config(key, value):
    global delay, p
    if key == "delay":
        delay = nbdkit.parse_delay("delay", value)
    elif key == "p":
        p = nbdkit.parse_probability("p", value)
    else:
        raise RuntimeError("unknown parameter " + key)


def config_complete():
    seen["delay"] = delay
    seen["p"] = p
    seen["types"] = [type(delay).__name__] + [type(x).__name__ for x in delay or ()] + \
        [type(p).__name__]
    seen["bad_delay"] = {s: outcome(nbdkit.parse_delay, "bad-delay", s) for s in BAD}
    seen["bad_p"] = {s: outcome(nbdkit.parse_probability, "bad-p", s) for s in BAD}
    seen["not_str"] = [outcome(nbdkit.parse_delay, "x", 1), outcome(nbdkit.parse_probability, 1, "1"),
                       outcome(nbdkit.parse_delay, "x")]
    seen["nul"] = outcome(nbdkit.parse_probability, "x", "0.5\0junk")


def open(readonly):
    return 1


def get_size(h):
    return 1024 * 1024


def pread(h, buf, offset, flags):
    if offset == 4096:
        start = time.monotonic()
        for _ in range(SLEEPS):
            nbdkit.nanosleep(*delay)
        seen["slept"] = time.monotonic() - start
    report = json.dumps(seen).encode().ljust(len(buf), b"\0")
    buf[:] = report[:len(buf)]
