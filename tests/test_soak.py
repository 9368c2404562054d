"""A short run of tools/soak: 8 connections of mixed reads, writes, flushes, zeroes and trims on
a file-backed script while workers are SIGKILLed at random; every acknowledged write must be
on disk (0 mismatches) and nbdkit must survive and exit cleanly."""

import os
import re
import sys
import unittest

import harness
from harness import NbdkitTestCase

SOAK = os.path.join(harness.SOURCE_ROOT, "tools", "soak")
DURATION = float(os.environ.get("PYWORKER_SOAK_SECONDS", "20"))


@unittest.skipIf(harness.REFERENCE, "kills pyworker's worker processes")
class SoakTest(NbdkitTestCase):

    def soak(self, *extra):
        r = self.run_cmd(["/usr/bin/python3", SOAK, "--duration", str(DURATION),
                          "--plugin", harness.PLUGIN, "--worker", harness.WORKER] + list(extra),
                         timeout=DURATION + 120)
        sys.stderr.write(r.stdout)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("mismatches: 0 ", r.stdout)
        served = int(re.search(r"requests served: (\d+)", r.stdout).group(1))
        killed = int(re.search(r"workers killed: (\d+)", r.stdout).group(1))
        self.assertGreater(served, 1000, r.stdout)
        self.assertGreater(killed, 3, r.stdout)
        return r.stdout

    def test_soak(self):
        self.soak()

    def test_soak_with_recover_reopen_no_client_sees_a_death(self):
        out = self.soak("--recover")
        self.assertIn("errors seen: 0 ", out)
        self.assertIn("reconnects: 0,", out)


if __name__ == "__main__":
    harness.main()
