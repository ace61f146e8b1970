"""Closing line of test.sh: our own tests (cmocka via make check, pytest
JUnit files), as 'total: N passed, N failed, N skipped'."""
import glob
import re
import sys
import xml.etree.ElementTree as ET

results = sys.argv[1]
passed = failed = skipped = 0
for path in glob.glob(results + "/*.junit.xml"):
    for case in ET.parse(path).getroot().iter("testcase"):
        tags = {c.tag for c in case}
        if "skipped" in tags:
            skipped += 1
        elif tags & {"failure", "error"}:
            failed += 1
        else:
            passed += 1
for path in glob.glob("tests/unit/test_*.log"):
    text = open(path, errors="replace").read()
    for word, n in re.findall(r"^\[  (PASSED|FAILED)  \] (\d+) test", text, re.M):
        if word == "PASSED":
            passed += int(n)
        else:
            failed += int(n)
print(f"total: {passed} passed, {failed} failed, {skipped} skipped")
