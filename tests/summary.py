"""Closing line of test.sh: our own tests (cmocka via make check, pytest
JUnit files), as 'total: N passed, N failed, N skipped'.

Usage: summary.py RESULTS [BUILD_DIR...]

Only this run's results count.  RESULTS/.started is touched by test.sh
when the run begins; a JUnit file or unit-test log older than that is a
leftover of an earlier run.  Every unit test Makefile.am lists in
UNIT_TESTS must have a log from this run in each BUILD_DIR (default: the
current directory): a missing or stale log (the test no longer builds, or
make check stopped before it) counts as one failure, and so does a log
without cmocka's closing summary (the binary crashed) or a log whose
automake result is not PASS (e.g. a sanitizer report at exit)."""
import glob
import os
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

MAKEFILE_AM = Path(__file__).resolve().parents[1] / "Makefile.am"


def unit_tests(makefile_am=MAKEFILE_AM):
    """The names in Makefile.am's UNIT_TESTS (continuation lines joined)."""
    text = makefile_am.read_text().replace("\\\n", " ")
    m = re.search(r"^UNIT_TESTS\s*=(.*)$", text, re.M)
    if not m or not m.group(1).split():
        raise SystemExit(f"summary: no UNIT_TESTS in {makefile_am}")
    return m.group(1).split()


def fresh(path, started):
    return os.path.exists(path) and os.path.getmtime(path) >= started


def count_unit_log(text, trs):
    """(passed, failed, note) for one cmocka log and its automake .trs."""
    summaries = re.findall(r"^\[  (PASSED|FAILED)  \] (\d+) test", text, re.M)
    passed = sum(int(n) for w, n in summaries if w == "PASSED")
    failed = sum(int(n) for w, n in summaries if w == "FAILED")
    if not re.search(r"^\[==========\] \d+ test\(s\) run\.", text, re.M):
        # crashed before cmocka's summary: the tests that did not report OK failed
        ok = len(re.findall(r"^\[       OK \]", text, re.M))
        planned = sum(int(n) for n in re.findall(r"^\[==========\] Running (\d+) test", text, re.M))
        return ok, max(1, planned - ok), "no cmocka summary (crashed)"
    result = re.search(r"^:test-result: (\S+)", trs, re.M)
    result = result.group(1) if result else "missing"
    if result != "PASS" and failed == 0:
        return passed, 1, f"make check says {result} although cmocka counted no failure"
    return passed, failed, None


def main(argv):
    results = argv[0]
    build_dirs = argv[1:] or ["."]
    stamp = os.path.join(results, ".started")
    if not os.path.exists(stamp):
        print(f"summary: {stamp} missing (test.sh touches it when the run starts)")
        return 1
    started = os.path.getmtime(stamp)
    passed = failed = skipped = 0
    for path in sorted(glob.glob(results + "/*.junit.xml")):
        if not fresh(path, started):
            print(f"summary: {path}: older than this run, not counted")
            continue
        for case in ET.parse(path).getroot().iter("testcase"):
            tags = {c.tag for c in case}
            if "skipped" in tags:
                skipped += 1
            elif tags & {"failure", "error"}:
                failed += 1
            else:
                passed += 1
    for build in build_dirs:
        for name in unit_tests():
            log = os.path.join(build, name + ".log")
            trs = os.path.join(build, name + ".trs")
            if not (fresh(log, started) and fresh(trs, started)):
                print(f"summary: {log}: no log from this run (did not build or did not run)")
                failed += 1
                continue
            p, f, note = count_unit_log(open(log, errors="replace").read(),
                                        open(trs, errors="replace").read())
            if note:
                print(f"summary: {log}: {note}")
            passed += p
            failed += f
    print(f"total: {passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
