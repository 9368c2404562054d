"""thread-stack=: the stacks of the threads nbdkit starts for its connections (1 MiB by default
under pyworker, which runs no Python on them; glibc would give each RLIMIT_STACK, usually
8 MiB, and reuse only 40 MiB of them). Seen where the kernel shows them, in /proc/PID/maps: a
thread stack is a read-write anonymous mapping right above its PROT_NONE guard page.
"""

import os
import unittest

from harness import NbdkitTestCase, pattern, scaled, wait_until

KiB = 1024
MiB = 1024 * KiB
REQUEST_THREADS = 16  # nbdkit's default --threads; each connection also has a thread of its own


def thread_stacks(pid):
    """{size in bytes: how many} of the process's mappings that look like thread stacks."""
    sizes = {}
    previous = None
    with open("/proc/%d/maps" % pid) as f:
        for line in f:
            fields = line.split()
            start, end = (int(x, 16) for x in fields[0].split("-"))
            anonymous = len(fields) == 5
            if (anonymous and fields[1] == "rw-p" and previous is not None
                    and previous[1] == start and previous[2] == "---p"):
                sizes[end - start] = sizes.get(end - start, 0) + 1
            previous = (start, end, fields[1])
    return sizes


class ThreadStackTest(NbdkitTestCase):

    def stacks_while_serving(self, size, *params):
        """The thread stacks of nbdkit serving one connection, once `size` has as many as
        that connection's threads (nbdkit may still be starting some after the first reply)."""
        server = self.start(self.example("ramdisk.py"), "size=1M", *params, args=["-v"])
        h = server.connect()
        h.pread(512, 0)
        wait_until(lambda: thread_stacks(server.pid).get(size, 0) >= REQUEST_THREADS + 1,
                   scaled(5))
        return server, thread_stacks(server.pid)

    def test_connections_get_1M_stacks(self):
        server, stacks = self.stacks_while_serving(MiB)
        self.assertGreaterEqual(stacks.get(MiB, 0), REQUEST_THREADS + 1, stacks)
        self.assertRegex(server.stderr(), r"pyworker: nbdkit's threads get 1024 KiB stacks "
                                          r"\(were \d+ KiB\): none of them runs Python")

    def test_thread_stack_sets_the_size(self):
        server, stacks = self.stacks_while_serving(2 * MiB, "thread-stack=2M")
        self.assertGreaterEqual(stacks.get(2 * MiB, 0), REQUEST_THREADS + 1, stacks)
        self.assertLess(stacks.get(MiB, 0), REQUEST_THREADS, stacks)
        self.assertIn("nbdkit's threads get 2048 KiB stacks", server.stderr())

    def test_smallest_stack_serves_large_requests_under_a_filter(self):
        # 128K, the least accepted: nbdkit, a filter and the plugin's side of a 32 MiB request
        # and of a write-and-read-back through the cow filter fit in it.
        server = self.start(self.example("ramdisk.py"), "size=64M", "thread-stack=128K",
                            args=["--filter=cow"])
        h = server.connect()
        data = pattern(32 * MiB, 5)
        h.pwrite(data, 4096)
        self.assertEqual(h.pread(32 * MiB, 4096), data)
        h.flush()
        self.assertEqual(self.run_cmd(["nbdinfo", "--size", server.uri]).stdout.strip(),
                         str(64 * MiB))

    def test_bad_values_name_the_problem(self):
        for value, message in [("big", "thread-stack=big: expected a size such as 1M or 8M"),
                               ("64K", "thread-stack=64K: expected 128K to 1G"),
                               ("2G", "thread-stack=2G: expected 128K to 1G")]:
            r = self.run_nbdkit("-f", "-U", os.path.join(self.tmp, "s"),
                                script=self.example("ramdisk.py"),
                                params=["thread-stack=" + value])
            self.assertNotEqual(r.returncode, 0, value)
            self.assertIn(message, r.stderr, value)


if __name__ == "__main__":
    unittest.main()
