# Where pyworker deliberately answers differently from `nbdkit python` 1.32: variant names
# (shell patterns; --full adds "@v1", "@v2+" ... suffixes), what may differ ("status", "client",
# "log") and why. Anything else that differs fails the suite; a listed variant that differs in
# an aspect not listed for it fails it too. The README's "Differences from `nbdkit python`" and
# docs/compatibility.md say the same for users.

DELIBERATE = [
    {
        "name": "conversion-messages",
        "variants": ["return/get_size/*", "return/block_size/*", "return/can_fua/-1*",
                     "return/can_fua/'native'*", "return/can_fua/None*",
                     "return/can_fua/Failing()*", "return/can_cache/None*",
                     "return/can_cache/-1*", "return/can_cache/'x'*",
                     "return/thread_model/-1*", "return/thread_model/'parallel'*",
                     "return/thread_model/None*", "return/thread_model/2**70*",
                     "return/thread_model/True*"],
        "aspects": ["log"],
        "reason": "The request fails the same way; pyworker's message names the script, the "
                  "callback, the value and what was expected, where nbdkit python shows "
                  "Python's C-API exception (\"PyLong_AsLongLong: error: ...\", "
                  "\"PyArg_ParseTuple: error: ...\"), nbdkit's generic rule or nothing at all.",
    },
    {
        "name": "junk-answers-are-errors",
        "variants": ["return/can_fua/3*", "return/can_fua/2**40*", "return/can_cache/3*",
                     "return/thread_model/4*"],
        "aspects": ["status", "client", "log"],
        "reason": "nbdkit python passes an out-of-range can_fua, can_cache or thread_model "
                  "answer on to nbdkit, which then uses a level the script never chose; "
                  "pyworker refuses it with an error naming the value (README).",
    },
    {
        "name": "text-not-utf8",
        "variants": ["return/*/b'\\xff'*", "return/list_exports/[b'\\xff']*"],
        "aspects": ["client", "log"],
        "reason": "nbdkit python passes bytes that are not UTF-8 on as an export name or "
                  "description (clients then fail to decode them); pyworker refuses them: NBD "
                  "strings are UTF-8.",
    },
    {
        "name": "lone-surrogate",
        "variants": ["return/*/'\\udcff'*", "return/list_exports/['\\udcff']*"],
        "aspects": ["status", "client", "log"],
        "reason": "nbdkit python crashes (strdup of NULL); pyworker fails the request with an "
                  "error.",
    },
    {
        "name": "too-long-strings",
        "variants": ["return/*/'d' * 5000*", "return/*/'x' * 5000*",
                     "return/list_exports/['x' * 5000]*",
                     "return/list_exports/[('a', 'd' * 5000)]*"],
        "aspects": ["log"],
        "reason": "A name or description longer than NBD's 4096 bytes: the client sees the "
                  "same; pyworker's log says which string and how long, nbdkit python's says "
                  "\"string too long\" or nothing.",
    },
    {
        "name": "script-stdout-after-start",
        "variants": ["module/print-in-callbacks*"],
        "aspects": ["log"],
        "reason": "What a script prints to stdout once nbdkit serves is lost in-process "
                  "(nbdkit's stdout); pyworker relays it to nbdkit's stderr (README).",
    },
    {
        "name": "export-name-before-go",
        "variants": ["arguments/export-name*"],
        "aspects": ["log"],
        "reason": "nbdkit.export_name() in default_export: nbdkit logs \"no connection in this "
                  "thread\" while listing exports only; pyworker logs it whenever no export "
                  "has been chosen yet (its plugin cannot tell the two calls apart).",
    },
]
