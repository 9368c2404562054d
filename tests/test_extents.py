"""Very long extents answers from an honest script are served as nbdkit python serves them:
the worker keeps what nbdkit_add_extent() would keep (at most 1 Mi extents, merged, clipped;
worker/value-conversions.h: shapeExtents), so the plugin's limits only ever catch a lying
worker (tests/test_hostile_worker.py) and never kill a correct one (issue 20).
"""

import harness
from harness import NbdkitTestCase, nbd, worker_pids


def block_status(h, count, offset, flags=0):
    """The (length, flags) pairs the server sent for base:allocation."""
    got = []

    def callback(metacontext, offset, entries, err):
        if metacontext == nbd.CONTEXT_BASE_ALLOCATION:
            got.extend(zip(entries[0::2], entries[1::2]))
        return 0

    h.block_status(count, offset, callback, flags)
    return got


# (count, offset, flags) requests, the same on both servers: the start, a range that needs
# more extents than nbdkit keeps, one starting in the middle of an extent, the last ones,
# and REQ_ONE.
def requests(size):
    return [(65536, 0, 0), (min(size, 1 << 30), 0, 0), (100000, 700 * 512 + 100, 0),
            (1 << 20, size - (1 << 20), 0), (1 << 20, 1000, nbd.CMD_FLAG_REQ_ONE)]


class LargeExtentsTest(NbdkitTestCase):

    def answers(self, plugin, count):
        script = self.script("extents-many.py")
        server = self.start(script, "extents=%d" % count, plugin=plugin)
        h = server.connect(meta_contexts=[nbd.CONTEXT_BASE_ALLOCATION])
        other = server.connect()
        pids = worker_pids(self.token)
        if plugin == harness.PYWORKER and not harness.REFERENCE:
            self.assertTrue(pids)
        size = h.get_size()
        out = [block_status(h, *r) for r in requests(size)]
        # The worker was not killed: both connections still served by it.
        self.assertEqual(h.pread(512, 0), bytes(512))
        self.assertEqual(other.pread(512, 512), bytes(512))
        self.assertEqual(worker_pids(self.token), pids)
        log = server.stderr()
        h.shutdown()
        other.shutdown()
        server.stop()
        return out, log

    def check_like_nbdkit_python(self, count):
        expected, _ = self.answers(harness.PYTHON, count)
        got, log = self.answers(harness.PYWORKER, count)
        self.assertNotIn("error", log)
        for request, e, g in zip(requests(count * 512), expected, got):
            self.assertEqual(len(g), len(e), request)
            self.assertTrue(g == e, "%s: pyworker's answer differs from nbdkit python's: "
                            "first entries %s vs %s" % (request, g[:4], e[:4]))
        # The long request: nbdkit keeps 1 Mi extents of its 1 Mi + 1 or 2 Mi.
        self.assertEqual(len(expected[1]), 1024 * 1024)
        return expected

    def test_1048577_extents_answered_as_nbdkit_python(self):
        self.check_like_nbdkit_python(1048577)

    def test_3000000_extents_answered_as_nbdkit_python(self):
        # Before issue 20 this made a 72 MB lane message: the worker was killed as hostile.
        self.check_like_nbdkit_python(3000000)


if __name__ == "__main__":
    harness.main()
