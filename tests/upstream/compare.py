"""Compare JUnit results of PgBouncer's own suite between builds.

--summary FILE          prints "N passed, N failed, N skipped"
BASELINE FILE [FILE..]  fails unless every test that passed in BASELINE
                        also passed in each FILE (the fork must pass what
                        an unpatched build of the same sources passes)
"""
import sys
import xml.etree.ElementTree as ET


def results(path):
    out = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        tags = {child.tag for child in case}
        if "skipped" in tags:
            out[name] = "skipped"
        elif tags & {"failure", "error"}:
            out[name] = "failed"
        else:
            out[name] = "passed"
    return out


def summary(res):
    count = {k: sum(1 for v in res.values() if v == k) for k in ("passed", "failed", "skipped")}
    return f"{count['passed']} passed, {count['failed']} failed, {count['skipped']} skipped"


def main(argv):
    if argv[:1] == ["--summary"]:
        print(summary(results(argv[1])))
        return 0
    base = results(argv[0])
    if not base:
        print(f"compare: no test results in {argv[0]}")
        return 1
    status = 0
    for path in argv[1:]:
        other = results(path)
        lost = sorted(n for n, v in base.items() if v == "passed" and other.get(n) != "passed")
        print(f"compare: {path}: {summary(other)}; baseline {summary(base)}")
        for name in lost:
            print(f"compare:   passed in the baseline, not here: {name} ({other.get(name, 'missing')})")
        if lost:
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
