"""Compare JUnit results of PgBouncer's own suite between builds.

--summary FILE          prints "N passed, N failed, N skipped"
--lost BASELINE FILE    prints the pytest node ids that passed in BASELINE
                        but not in FILE, one per line
BASELINE FILE[,RERUN].. fails unless every test that passed in BASELINE
                        also passed in each FILE, or in its RERUN (the same
                        tests run again alone: some upstream tests race
                        under load) (the fork must pass what an unpatched
                        build of the same sources passes)
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


def node_id(name):
    """test.test_auth::test_message -> test/test_auth.py::test_message"""
    module, _, test = name.partition("::")
    return module.replace(".", "/") + ".py::" + test


def lost(base, other):
    return sorted(n for n, v in base.items() if v == "passed" and other.get(n) != "passed")


def summary(res):
    count = {k: sum(1 for v in res.values() if v == k) for k in ("passed", "failed", "skipped")}
    return f"{count['passed']} passed, {count['failed']} failed, {count['skipped']} skipped"


def main(argv):
    if argv[:1] == ["--summary"]:
        print(summary(results(argv[1])))
        return 0
    if argv[:1] == ["--lost"]:
        for name in lost(results(argv[1]), results(argv[2])):
            print(node_id(name))
        return 0
    base = results(argv[0])
    if not base:
        print(f"compare: no test results in {argv[0]}")
        return 1
    status = 0
    for arg in argv[1:]:
        path, _, rerun = arg.partition(",")
        other = results(path)
        print(f"compare: {path}: {summary(other)}; baseline {summary(base)}")
        again = results(rerun) if rerun else {}
        for name in lost(base, other):
            if again.get(name) == "passed":
                print(f"compare:   {name} failed in the full run, passed when run again alone")
                continue
            print(f"compare:   passed in the baseline, not here: {name} ({other.get(name, 'missing')})")
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
