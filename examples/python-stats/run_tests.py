"""Runs the package's unit tests and prints one line per test, in a stable order."""

import os
import sys
import unittest


def iterate(suite):
    for item in suite:
        if isinstance(item, unittest.TestSuite):
            yield from iterate(item)
        else:
            yield item


here = os.path.dirname(os.path.abspath(__file__))
suite = unittest.defaultTestLoader.discover(os.path.join(here, "tests"), top_level_dir=here)
failed = 0
tests = sorted(iterate(suite), key=lambda test: test.id())
for test in tests:
    result = unittest.TestResult()
    test.run(result)
    ok = result.wasSuccessful()
    failed += 0 if ok else 1
    print(f"{'ok  ' if ok else 'FAIL'} {test.id()}")
    for _, trace in result.failures + result.errors:
        print(trace, file=sys.stderr)
print(f"{len(tests) - failed} passed, {failed} failed")
sys.exit(1 if failed else 0)
