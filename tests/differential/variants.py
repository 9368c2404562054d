# The differential suite's script variants: a small API 2 (or API 1) RAM disk, and every way
# of bending it that a script for `nbdkit python` can. Each variant is (name, script text).
# Names are "axis/callback/what" so that the table of deliberate differences (deliberate.py)
# can match them with shell patterns.

import itertools

SIZE = 1024 * 1024

PRELUDE = '''\
import errno, json, sys
import nbdkit
SIZE = %(size)d
disk = bytearray(SIZE)
JOURNAL = []
def note(*what):
    JOURNAL.append(list(what))
class Index:
    def __init__(self, value): self.value = value
    def __index__(self): return self.value
class Truthy:
    def __bool__(self): return True
class Falsy:
    def __bool__(self): return False
class Failing:
    def __index__(self): raise ValueError("no index")
    def __bool__(self): raise ValueError("no bool")
def journal_into(buf, offset):
    # The last 4 KiB read back the callbacks seen so far: the client sees the call sequence
    # and the flags nbdkit passed.
    if offset >= SIZE - 4096:
        text = json.dumps(JOURNAL[-60:]).encode()[:4096]
        buf[:] = (text + bytes(4096))[offset - (SIZE - 4096):][:len(buf)]
        return True
    return False
''' % {"size": SIZE}

# The base callbacks, by API version. note() records each call.
V2 = {
    "API_VERSION": "API_VERSION = 2",
    "open": "def open(readonly):\n    note('open', readonly)\n    return {}",
    "get_size": "def get_size(h):\n    note('get_size')\n    return SIZE",
    "pread": ("def pread(h, buf, offset, flags):\n"
              "    if journal_into(buf, offset): return\n"
              "    note('pread', len(buf), offset, flags)\n"
              "    buf[:] = disk[offset:offset + len(buf)]"),
    "pwrite": ("def pwrite(h, buf, offset, flags):\n"
               "    note('pwrite', len(buf), offset, flags)\n"
               "    disk[offset:offset + len(buf)] = buf"),
    "zero": ("def zero(h, count, offset, flags):\n"
             "    note('zero', count, offset, flags)\n"
             "    disk[offset:offset + count] = bytes(count)"),
}
V2_MORE = {
    "flush": "def flush(h, flags):\n    note('flush', flags)",
    "trim": ("def trim(h, count, offset, flags):\n"
             "    note('trim', count, offset, flags)\n"
             "    disk[offset:offset + count] = bytes(count)"),
    "cache": "def cache(h, count, offset, flags):\n    note('cache', count, offset, flags)",
    "extents": ("def extents(h, count, offset, flags):\n"
                "    note('extents', count, offset, flags)\n"
                "    return [(0, 65536, 0), (65536, SIZE - 65536, 3)]"),
}
V1 = {
    "API_VERSION": "",
    "open": V2["open"],
    "get_size": V2["get_size"],
    "pread": ("def pread(h, count, offset):\n"
              "    buf = bytearray(count)\n"
              "    if journal_into(buf, offset): return buf\n"
              "    note('pread', count, offset)\n"
              "    return disk[offset:offset + count]"),
    "pwrite": ("def pwrite(h, buf, offset):\n"
               "    note('pwrite', len(buf), offset)\n"
               "    disk[offset:offset + len(buf)] = buf"),
    "zero": ("def zero(h, count, offset, may_trim):\n"
             "    note('zero', count, offset, may_trim)\n"
             "    disk[offset:offset + count] = bytes(count)"),
}
V1_MORE = {
    "flush": "def flush(h):\n    note('flush')",
    "trim": ("def trim(h, count, offset):\n"
             "    note('trim', count, offset)\n"
             "    disk[offset:offset + count] = bytes(count)"),
    "cache": V2_MORE["cache"],
    "extents": V2_MORE["extents"],
}

# Signatures, for callbacks that the base does not define.
SIGNATURES = {
    "config_complete": "()", "thread_model": "()", "get_ready": "()", "after_fork": "()",
    "cleanup": "()", "preconnect": "(readonly)", "list_exports": "(readonly, is_tls)",
    "default_export": "(readonly, is_tls)", "open": "(readonly)", "close": "(h)",
    "export_description": "(h)", "get_size": "(h)", "block_size": "(h)",
    "is_rotational": "(h)", "can_multi_conn": "(h)", "can_write": "(h)", "can_flush": "(h)",
    "can_trim": "(h)", "can_zero": "(h)", "can_fast_zero": "(h)", "can_fua": "(h)",
    "can_cache": "(h)", "can_extents": "(h)",
}
SIGNATURES_V2 = {
    "pread": "(h, buf, offset, flags)", "pwrite": "(h, buf, offset, flags)",
    "flush": "(h, flags)", "trim": "(h, count, offset, flags)",
    "zero": "(h, count, offset, flags)", "cache": "(h, count, offset, flags)",
    "extents": "(h, count, offset, flags)",
}
SIGNATURES_V1 = dict(SIGNATURES_V2, pread="(h, count, offset)", pwrite="(h, buf, offset)",
                     flush="(h)", trim="(h, count, offset)", zero="(h, count, offset, may_trim)")

CAN_BOOLEANS = ["can_write", "can_flush", "can_trim", "can_zero", "can_fast_zero",
                "can_extents", "can_multi_conn", "is_rotational"]
BOOLEAN_VALUES = ["True", "False", "1", "0", "None", "'yes'", "Truthy()", "Falsy()",
                  "Index(1)", "[1]"]

RETURNS = {
    "get_size": ["SIZE", "Index(8192)", "0", "4097", "-1", "-5", "2**63", "2**63 - 1", "'1024'",
                 "1024.0", "None", "True", "Failing()"],
    "can_fua": ["0", "1", "2", "3", "-1", "Index(2)", "Index(1)", "'native'", "None", "True",
                "False", "2**40", "nbdkit.FUA_NATIVE", "Failing()"],
    "can_cache": ["0", "1", "2", "3", "Index(2)", "None", "True", "-1", "'x'"],
    "block_size": ["(512, 4096, 65536)", "(Index(512), 4096, Index(65536))", "[512, 4096, 65536]",
                   "(512, 4096)", "(0, 0, 0)", "(3, 4096, 65536)", "(512, 4096, 2**32)",
                   "(-1, 4096, 65536)", "None", "(1, 512, 0xffffffff)", "(4096, 4096, 4096)",
                   "(512, 8192, 4096)", "(65536, 32 * 2**20, 0xffffffff)", "('1', 2, 3)",
                   "(True, 512, 512)"],
    "export_description": ["'d'", "b'bdesc'", "''", "'x\\x00y'", "b'q\\x00r'", "3", "None",
                           "'caf\\u00e9 \\u4e2d'", "b'\\xff'", "'\\udcff'", "('a',)",
                           "'d' * 5000"],
    "default_export": ["'disk'", "b'disk'", "''", "3", "None", "'a\\x00b'", "b'\\xff'",
                       "'\\udcff'", "b''", "'caf\\u00e9'", "'x' * 5000"],
    "list_exports": ["['a', 'b']", "[b'bx', (b'by', b'dy')]", "[('a', 'da')]", "[]", "3",
                     "None", "[3]", "[('a', 'b', 'c')]", "[(1, 'x')]", "[('a', 3)]",
                     "['x\\x00y']", "iter(())", "{'k1': 1, 'k2': 2}", "'ab'", "[b'\\xff']",
                     "['\\udcff']", "[('a', None)]", "[('', '')]", "[['a', 'b']]",
                     "(n for n in ['g1', 'g2'])", "['x' * 5000]", "[('a', 'd' * 5000)]"],
    "thread_model": ["0", "1", "2", "3", "Index(2)", "4", "-1", "'parallel'", "None", "True",
                     "nbdkit.THREAD_MODEL_PARALLEL", "2**70"],
    "extents": ["[(0, SIZE, 0)]", "[(0, 4096, 4), (4096, SIZE - 4096, 8)]",
                "[(0, 4096, 2**32 + 3), (4096, SIZE - 4096, 7)]",
                "[(0, 2**63, 0), (2**63, 2**63, 1)]", "[(0, 4096, 1), (4096, 2**64 - 1, 0)]",
                "[(0, Index(4096), 1), (4096, SIZE - 4096, 0)]", "[(0, 4096, -1)]",
                "[(0, 4096, 2**64 + 1)]", "[(0, 4096, 1), (8192, SIZE, 0)]",
                "[(4096, SIZE, 0)]", "[]", "3", "[3]", "[(0, 4096)]", "None",
                "[(0, 0, 1), (0, SIZE, 2)]", "[(0, 512, 1)]", "((0, SIZE, 3),)",
                "[(0, 4096, 'hole')]", "[[0, SIZE, 0]]", "[(0, SIZE, True)]",
                "[(-4096, 8192, 1), (4096, SIZE, 0)]", "[(0, SIZE * 4, 2)]",
                "[(o, 4096, (o // 4096) % 4) for o in range(0, SIZE, 4096)]",
                "[(offset, count, 1)]", "[(offset, 1, 1), (offset + 1, count - 1, 2)]"],
}
for name in CAN_BOOLEANS:
    RETURNS[name] = BOOLEAN_VALUES

GENERATORS = {
    "extents": [
        ("yield-then-raise", "    yield (0, SIZE, 3)\n    raise RuntimeError('part-way')"),
        ("raise-at-once", "    raise RuntimeError('at once')\n    yield (0, SIZE, 3)"),
        ("yield-two", "    yield (0, 4096, 1)\n    yield (4096, SIZE - 4096, 0)"),
        ("yield-then-seterr", "    yield (0, 4096, 1)\n    nbdkit.set_error(errno.ENOSPC)\n"
                              "    raise RuntimeError('part-way')"),
        ("yield-bad-then-raise", "    yield (0, 4096)\n    raise RuntimeError('x')"),
        ("yield-nothing", "    return\n    yield"),
    ],
    "list_exports": [
        ("yield-then-raise", "    yield 'a'\n    raise RuntimeError('part-way')"),
        ("raise-at-once", "    raise RuntimeError('at once')\n    yield 'a'"),
        ("yield-two", "    yield 'a'\n    yield ('b', 'db')"),
        ("yield-bytes", "    yield b'ba'\n    yield (b'bb', 'db')"),
        ("yield-bad-then-raise", "    yield 3\n    raise RuntimeError('x')"),
        ("yield-nothing", "    return\n    yield"),
    ],
}

EXCEPTION_CALLBACKS = ["config_complete", "thread_model", "get_ready", "after_fork", "cleanup",
                       "preconnect", "list_exports", "default_export", "open", "close",
                       "export_description", "get_size", "block_size", "pread", "pwrite",
                       "flush", "trim", "zero", "cache", "extents"] + CAN_BOOLEANS + \
                      ["can_fua", "can_cache"]
EXCEPTIONS = {
    "raise": "    raise RuntimeError('boom in %(cb)s')",
    "seterr-enospc-raise": "    nbdkit.set_error(errno.ENOSPC)\n    raise RuntimeError('boom')",
    "seterr-eopnotsupp-raise": ("    nbdkit.set_error(errno.EOPNOTSUPP)\n"
                                "    raise RuntimeError('boom')"),
    "seterr-eperm-return": "    nbdkit.set_error(errno.EPERM)\n%(body)s",
    "systemexit": "    sys.exit(4)",
    "seterr-erange-raise": "    nbdkit.set_error(errno.ERANGE)\n    raise ValueError('v')",
}
EXCEPTIONS_FULL = {
    "seterr-einval-raise": "    nbdkit.set_error(errno.EINVAL)\n    raise RuntimeError('boom')",
    "seterr-eshutdown-raise": "    nbdkit.set_error(errno.ESHUTDOWN)\n    raise OSError('x')",
    "keyerror": "    raise KeyError('k')",
    "oserror-errno": "    raise OSError(errno.EACCES, 'denied')",
}

MODULE_LEVEL = {
    "raise-at-load": "raise RuntimeError('at load')",
    "exit-0": "sys.exit(0)",
    "exit-3": "sys.exit(3)",
    "exit-none": "sys.exit()",
    "exit-message": "sys.exit('goodbye from the script')",
    "exit-300": "sys.exit(300)",
    "syntax-error": "def broken(:\n    pass",
    "print-at-load": "print('hello at load')",
    "stderr-at-load": "print('to stderr at load', file=sys.stderr)",
    "debug-at-load": "nbdkit.debug('debug at load')",
    "open-not-callable": "open = 3",
    "pread-none": "pread = None",
    "no-get-size": "del get_size",
    "no-open": "del open",
    "keyboard-interrupt": "raise KeyboardInterrupt",
    "import-missing": "import no_such_module_for_pyworker",
    "set-error-at-load": "nbdkit.set_error(errno.EIO)",
    "parse-size": "SIZE = nbdkit.parse_size('512K'); disk = bytearray(SIZE)",
    "parse-size-junk": "nbdkit.parse_size('junk')",
    "export-name-at-load": "nbdkit.export_name()",
}
API_VERSIONS = ["1", "2", "3", "0", "-1", "Index(2)", "'2'", "None", "True", "2.0", "2**70"]


class Variant:
    def __init__(self, name, api=2, more=False, overrides=None, extra="", config=()):
        self.name = name
        self.api = api
        self.more = more          # define flush, trim, cache, extents too
        self.overrides = dict(overrides or {})  # callback -> source, or None to remove
        self.extra = extra        # module-level code after the callbacks
        self.config = list(config)

    def text(self):
        base = dict(V2 if self.api == 2 else V1)
        if self.more:
            base.update(V2_MORE if self.api == 2 else V1_MORE)
        for name, source in self.overrides.items():
            if source is None:
                base.pop(name, None)
            else:
                base[name] = source
        parts = [PRELUDE] + [v for v in base.values() if v] + [self.extra]
        return "\n".join(parts) + "\n"


def define(name, body, api=2):
    sig = SIGNATURES.get(name) or (SIGNATURES_V2 if api == 2 else SIGNATURES_V1)[name]
    return "def %s%s:\n    note(%r)\n%s" % (name, sig, name, body)


def body_of(name, api=2):
    """The base body of `name` (its lines after `def`), or a plain return."""
    table = dict(V2 if api == 2 else V1)
    table.update(V2_MORE if api == 2 else V1_MORE)
    if name in table:
        return "\n".join(table[name].split("\n")[1:])
    return {"thread_model": "    return nbdkit.THREAD_MODEL_SERIALIZE_ALL_REQUESTS",
            "list_exports": "    return ['']", "default_export": "    return ''",
            "export_description": "    return 'description'", "block_size": "    return (1, 4096, 65536)",
            "can_fua": "    return nbdkit.FUA_EMULATE", "can_cache": "    return nbdkit.CACHE_NONE",
            }.get(name, "    return True" if name in CAN_BOOLEANS else "    pass")


def generate(full=False):
    apis = (2, 1) if full else (2,)
    flavours = (False, True) if full else (False,)
    out = []

    def add(name, more=None, **kw):
        # In --full, once per API version and (unless `more` is fixed) with and without
        # flush/trim/cache/extents; normally API 2 only, without them unless `more`.
        for api, flavour in itertools.product(apis, flavours):
            if more is not None and flavour:
                continue
            m = flavour if more is None else more
            suffix = "@v%d%s" % (api, "+" if m else "") if full else ""
            out.append(Variant(name + suffix, api=api, more=m, **kw))

    add("base")
    add("base-more", more=True)
    if not full:
        out.append(Variant("base-v1", api=1))
        out.append(Variant("base-v1-more", api=1, more=True))

    # 1. Every returning callback x odd values.
    for cb, values in RETURNS.items():
        for value in values:
            out_name = "return/%s/%s" % (cb, value)
            if cb == "extents":
                src = "def extents(h, count, offset, flags):\n    note('extents')\n    return %s" % value
                add(out_name, overrides={cb: src}, more=True)
                continue
            add(out_name, overrides={cb: define(cb, "    return %s" % value)})

    # 2. Generators.
    for cb, cases in GENERATORS.items():
        for what, body in cases:
            sig = SIGNATURES.get(cb) or SIGNATURES_V2[cb]
            src = "def %s%s:\n%s" % (cb, sig, body)
            add("generator/%s/%s" % (cb, what), overrides={cb: src}, more=(cb == "extents"))

    # 3. Exceptions, with and without set_error, in every callback.
    exceptions = dict(EXCEPTIONS, **(EXCEPTIONS_FULL if full else {}))
    for cb in EXCEPTION_CALLBACKS:
        for what, template in exceptions.items():
            for api in apis:
                body = body_of(cb, api)
                sig = SIGNATURES.get(cb) or (SIGNATURES_V2 if api == 2 else SIGNATURES_V1)[cb]
                src = "def %s%s:\n    note(%r)\n%s" % (cb, sig, cb,
                                                       template % {"cb": cb, "body": body})
                out.append(Variant("raise/%s/%s%s" % (cb, what, "@v1" if api == 1 else ""),
                                   api=api, more=True, overrides={cb: src}))

    # 4. Missing and inconsistent optional callbacks.
    optional = ["pwrite", "flush", "trim", "zero", "cache", "extents"]
    subsets = range(64) if full else [0, 1, 2, 4, 8, 16, 32, 63, 21, 42, 12, 48, 3]
    for bits in subsets:
        present = [o for i, o in enumerate(optional) if bits & (1 << i)]
        overrides = {o: None for o in optional if o not in present}
        name = "missing/" + ("+".join(present) or "none")
        out.append(Variant(name, more=True, overrides=overrides))
        if full:
            out.append(Variant(name + "@v1", api=1, more=True, overrides=overrides))
    pairs = [("can_write", "pwrite"), ("can_flush", "flush"), ("can_trim", "trim"),
             ("can_zero", "zero"), ("can_cache", "cache"), ("can_extents", "extents"),
             ("can_fua", "flush"), ("can_fast_zero", "zero")]
    for can, plain in pairs:
        for answer in (["True", "False"] if can not in ("can_fua", "can_cache")
                       else ["nbdkit.%s_NONE" % can[4:].upper(), "nbdkit.%s_EMULATE" % can[4:].upper(),
                             "nbdkit.%s_NATIVE" % can[4:].upper()]):
            for api in apis:
                src = define(can, "    return %s" % answer)
                out.append(Variant("inconsistent/%s=%s/without-%s%s" % (can, answer, plain,
                                                                          "@v1" if api == 1 else ""),
                                   api=api, more=True, overrides={can: src, plain: None}))
                out.append(Variant("inconsistent/%s=%s/with-%s%s" % (can, answer, plain,
                                                                       "@v1" if api == 1 else ""),
                                   api=api, more=True, overrides={can: src}))
    # can_fast_zero's default follows can_zero (issue 21, item 1).
    for zero_present in (True, False):
        for can_zero in ("True", "False", "1", None):
            overrides = {} if zero_present else {"zero": None}
            if can_zero is not None:
                overrides["can_zero"] = define("can_zero", "    return %s" % can_zero)
            out.append(Variant("fast-zero-default/zero=%s/can_zero=%s" % (zero_present, can_zero),
                               more=True, overrides=overrides))

    # 5. Flags: every data callback with FUA native, emulated or none, with fast zero.
    for fua in ("nbdkit.FUA_NONE", "nbdkit.FUA_EMULATE", "nbdkit.FUA_NATIVE"):
        for fast in ("True", "False", None):
            for api in apis:
                overrides = {"can_fua": define("can_fua", "    return %s" % fua)}
                if fast is not None:
                    overrides["can_fast_zero"] = define("can_fast_zero", "    return %s" % fast)
                out.append(Variant("flags/fua=%s/fast_zero=%s%s" % (fua[7:], fast,
                                                                     "@v1" if api == 1 else ""),
                                   api=api, more=True, overrides=overrides))
    for cache in ("nbdkit.CACHE_NONE", "nbdkit.CACHE_EMULATE", "nbdkit.CACHE_NATIVE"):
        out.append(Variant("flags/cache=%s" % cache[7:], more=True,
                           overrides={"can_cache": define("can_cache", "    return %s" % cache)}))
    out.append(Variant("flags/multi-conn+rotational", more=True, overrides={
        "can_multi_conn": define("can_multi_conn", "    return True"),
        "is_rotational": define("is_rotational", "    return True")}))

    # 6. Odd returns of data callbacks (ignored in-process) and API 1 pread shapes.
    for cb in ("pwrite", "flush", "trim", "zero", "cache"):
        for value in ("-1", "'no'", "False"):
            for api in apis:
                body = body_of(cb, api) + "\n    return %s" % value
                sig = (SIGNATURES_V2 if api == 2 else SIGNATURES_V1)[cb]
                out.append(Variant("data-return/%s/%s%s" % (cb, value, "@v1" if api == 1 else ""),
                                   api=api, more=True,
                                   overrides={cb: "def %s%s:\n%s" % (cb, sig, body)}))
    for value in ("bytes(count)", "bytes(count + 10)", "bytes(count - 1)", "'x' * count",
                  "None", "memoryview(bytes(count))", "bytearray(count)", "[0] * count",
                  "b''", "array.array('b', bytes(count))"):
        src = ("def pread(h, count, offset):\n    import array\n"
               "    buf = bytearray(count)\n    if journal_into(buf, offset): return buf\n"
               "    return %s" % value)
        out.append(Variant("pread-v1/%s" % value, api=1, overrides={"pread": src}))
    for value in ("None", "-1", "'x'", "bytes(len(buf))"):
        src = ("def pread(h, buf, offset, flags):\n"
               "    if journal_into(buf, offset): return\n"
               "    buf[:] = disk[offset:offset + len(buf)]\n    return %s" % value)
        out.append(Variant("pread-v2-return/%s" % value, overrides={"pread": src}))
    out.append(Variant("pread-v2/unfilled", overrides={"pread": (
        "def pread(h, buf, offset, flags):\n    if journal_into(buf, offset): return\n"
        "    pass")}))
    out.append(Variant("pread-v2/keeps-buffer", overrides={"pread": (
        "KEPT = []\ndef pread(h, buf, offset, flags):\n    if journal_into(buf, offset): return\n"
        "    KEPT.append(buf)\n    buf[:] = bytes(len(buf))")}))
    out.append(Variant("pread-v2/resize", overrides={"pread": (
        "def pread(h, buf, offset, flags):\n    if journal_into(buf, offset): return\n"
        "    buf[:] = bytes(len(buf) + 1)")}))
    for value in ("None", "0", "{}", "Falsy()", "'handle'"):
        out.append(Variant("open-returns/%s" % value,
                           overrides={"open": define("open", "    return %s" % value)}))

    # 7. Module-level behaviour and API_VERSION.
    for what, code in MODULE_LEVEL.items():
        out.append(Variant("module/%s" % what, extra=code))
    for value in API_VERSIONS:
        out.append(Variant("api-version/%s" % value,
                           overrides={"API_VERSION": "API_VERSION = %s" % value}))
    out.append(Variant("module/config-complete-raises", overrides={
        "config_complete": "def config_complete():\n    raise RuntimeError('cc')"}))
    out.append(Variant("module/config-without-config", config=["k=v"]))
    out.append(Variant("module/config-raises", config=["k=v"], overrides={
        "config": "def config(k, v):\n    raise ValueError('bad key ' + k)"}))
    out.append(Variant("module/config-seterr", config=["k=v"], overrides={
        "config": "def config(k, v):\n    nbdkit.set_error(errno.ENOSPC)\n    raise ValueError(k)"}))
    out.append(Variant("module/config-exit", config=["k=v"], overrides={
        "config": "def config(k, v):\n    sys.exit(5)"}))
    out.append(Variant("module/print-in-callbacks", overrides={
        "open": "def open(readonly):\n    print('opening', readonly)\n    return {}",
        "close": "def close(h):\n    print('closing', file=sys.stderr)"}))

    # 8. Arguments as the script sees them (readonly, is_tls as bool or int).
    out.append(Variant("arguments/readonly-types", overrides={
        "preconnect": "def preconnect(readonly):\n    note('preconnect', repr(readonly))",
        "list_exports": "def list_exports(readonly, is_tls):\n"
                        "    note('list_exports', repr(readonly), repr(is_tls))\n    return ['']",
        "default_export": "def default_export(readonly, is_tls):\n"
                          "    note('default_export', repr(readonly), repr(is_tls))\n    return ''",
        "open": "def open(readonly):\n    note('open', repr(readonly))\n    return {}"}))
    out.append(Variant("arguments/export-name", overrides={
        "open": "def open(readonly):\n    note('open', nbdkit.export_name())\n    return {}",
        "default_export": "def default_export(readonly, is_tls):\n"
                          "    note('default_export', nbdkit.export_name())\n    return 'x'"}))

    names = [v.name for v in out]
    assert len(names) == len(set(names)), [n for n in names if names.count(n) > 1]
    return out
