"""The data path: random offsets and sizes from 1 byte to 64 MiB, written and read back by
several connections at once and compared with a reference, with one worker and with
workers=N. Payloads of 32 KiB and more travel through memory shared with the worker, smaller
ones inside the messages: both are exercised."""

import os
import random
import threading
import unittest

from harness import NbdkitTestCase

MiB = 1024 * 1024
MAX_REQUEST = 64 * MiB  # nbdkit's limit


def random_size(rng):
    # Log-uniform from 1 byte to 64 MiB, and the edges themselves.
    pick = rng.random()
    if pick < 0.05:
        return 1
    if pick < 0.10:
        return MAX_REQUEST
    return max(1, int(2 ** rng.uniform(0, 26)))


class DataPathTest(NbdkitTestCase):

    def exercise(self, server, connections, region, operations, seed):
        """Each connection owns one region of the disk and checks every read against its own
        reference copy; the regions are disjoint, so the connections run freely at once."""
        errors = []

        def client(index):
            rng = random.Random(seed * 100 + index)
            base = index * region
            reference = bytearray(region)
            try:
                h = server.connect()
                h.pwrite(bytes(region), base)  # start from a known state
                for _ in range(operations):
                    size = min(random_size(rng), region)
                    offset = rng.randrange(0, region - size + 1)
                    if rng.random() < 0.5:
                        data = rng.randbytes(size)
                        h.pwrite(data, base + offset)
                        reference[offset:offset + size] = data
                    else:
                        got = h.pread(size, base + offset)
                        if got != reference[offset:offset + size]:
                            errors.append("connection %d: %d bytes at %d differ"
                                          % (index, size, offset))
                got = h.pread(region, base) if region <= MAX_REQUEST else None
                if got is not None and got != reference:
                    errors.append("connection %d: final read differs" % index)
            except Exception as e:  # any failure is what this test reports
                errors.append("connection %d: %r" % (index, e))

        threads = [threading.Thread(target=client, args=(i,)) for i in range(connections)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        self.assertFalse([t for t in threads if t.is_alive()], "a client hung")
        self.assertEqual(errors, [])

    def test_one_worker_three_connections(self):
        server = self.start(self.example("ramdisk.py"), "size=%d" % (3 * MAX_REQUEST))
        self.exercise(server, connections=3, region=MAX_REQUEST, operations=30, seed=1)
        # The payloads really went through the shared memory: the worker maps it.
        pid = self.assertWorkerRunning()[0]
        with open("/proc/%d/maps" % pid) as f:
            self.assertIn("memfd:pyworker-data", f.read())

    def test_workers_share_a_file(self):
        disk = os.path.join(self.tmp, "disk.img")
        with open(disk, "wb") as f:
            f.truncate(4 * MAX_REQUEST)
        server = self.start(self.example("file.py"), "file=" + disk, "workers=2")
        self.exercise(server, connections=4, region=MAX_REQUEST, operations=20, seed=2)


if __name__ == "__main__":
    unittest.main()
