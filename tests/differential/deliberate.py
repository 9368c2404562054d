# Where pyworker deliberately answers differently from `nbdkit python` 1.32, by variant name
# (shell patterns) and by what may differ ("status", "client", "log"). Anything else that
# differs fails the suite. The README's "Differences from `nbdkit python`" and
# docs/compatibility.md say the same, for users.

DELIBERATE = [
]
