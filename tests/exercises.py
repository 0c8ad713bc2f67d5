"""
The classroom kit: the core pieces a course assigns are marked in the source,

    # --- exercise NAME (solution below) ---
    ...the solution...
    # --- end exercise ---

and this script turns the repository into a student copy, and proves that every exercise
is caught by its tests (docs/exercises.md lists them).

    python tests/exercises.py list                  # the exercises in order, their tests
    python tests/exercises.py make DIR              # a student copy, every exercise blank
    python tests/exercises.py make DIR --only A,B   # ... with these exercises blank
    python tests/exercises.py grade DIR             # a student's copy, exercise by exercise
    python tests/exercises.py check                 # prove the kit (CI runs this)

A blank exercise is the lines between its markers replaced by one
`raise NotImplementedError(...)`, so the copy still imports. Tests say which exercise they
check with @pytest.mark.exercise("NAME"), and which others they need with
@pytest.mark.exercise("NAME", needs=("OTHER",)): while OTHER is blank they skip, saying so
(conftest.py). `python -m pytest --exercise=NAME` runs an exercise's tests.
"""
import argparse
import ast
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join("docs", "exercises.md")
BEGIN = re.compile(r"^(\s*)# --- exercise (\w+) \((solution below|your code here)\) ---\s*$")
END = re.compile(r"^\s*# --- end exercise ---\s*$")
SKIP_DIRS = {".git", "out", "__pycache__", ".pytest_cache", ".whl"}


class KitError(Exception):
    pass


# -----------------------------------------------------------------------------
# finding and blanking exercises

def source_files(root=ROOT):
    """The project's Python files outside tests/, in a fixed order."""
    out = []
    for d, dirs, files in os.walk(root):
        dirs[:] = sorted(x for x in dirs if x not in SKIP_DIRS and not x.startswith(".")
                         and not (d == root and x == "tests"))
        out += [os.path.join(d, f) for f in sorted(files) if f.endswith(".py")]
    return out


def find_in(path, text):
    """[(name, begin line index, end line index, indent)] of one file's marked regions.
    Unclosed, nested or empty regions are errors naming the file and line."""
    found, open_ = [], None
    for i, line in enumerate(text.split("\n")):
        m = BEGIN.match(line)
        if m:
            if open_:
                raise KitError(f"{path}:{i + 1}: exercise {m.group(2)} begins inside "
                               f"exercise {open_[0]} (line {open_[1] + 1})")
            open_ = (m.group(2), i, m.group(1))
        elif END.match(line):
            if not open_:
                raise KitError(f"{path}:{i + 1}: 'end exercise' without a beginning")
            if i == open_[1] + 1:
                raise KitError(f"{path}:{i + 1}: exercise {open_[0]} is empty")
            found.append((open_[0], open_[1], i, open_[2]))
            open_ = None
    if open_:
        raise KitError(f"{path}:{open_[1] + 1}: exercise {open_[0]} has no 'end exercise'")
    return found


def find_exercises(root=ROOT):
    """{name: (file relative to root, first line of the solution (1-based), solution
    lines)}, in source order. A name used twice is an error."""
    out = {}
    for path in source_files(root):
        with open(path, encoding="utf-8") as f:
            text = f.read()
        rel = os.path.relpath(path, root)
        for name, b, e, _ in find_in(rel, text):
            if name in out:
                raise KitError(f"{rel}:{b + 1}: exercise {name} is also in {out[name][0]}")
            out[name] = (rel, b + 2, e - b - 1)
    return out


def blank_text(path, text, names):
    """The file's text with the named exercises' solutions replaced by a raise."""
    lines = text.split("\n")
    for name, b, e, indent in reversed(find_in(path, text)):
        if name in names:
            msg = f"exercise {name}: your code here (docs/exercises.md)"
            lines[b:e + 1] = [f"{indent}# --- exercise {name} (your code here) ---",
                              f"{indent}raise NotImplementedError({msg!r})",
                              f"{indent}# --- end exercise ---"]
    return "\n".join(lines)


def blank_exercises(root=ROOT):
    """The exercises still blank in a copy: between their markers stands only the raise
    that `make` wrote. conftest.py skips the tests that need one of them."""
    out = set()
    for path in source_files(root):
        with open(path, encoding="utf-8") as f:
            text = f.read()
        lines = text.split("\n")
        for name, b, e, _ in find_in(os.path.relpath(path, root), text):
            body = [x.strip() for x in lines[b + 1:e] if x.strip()]
            if (len(body) == 1 and body[0].startswith("raise NotImplementedError(")
                    and f"exercise {name}:" in body[0]):
                out.add(name)
    return out


def copy_repo(dst, names=(), src=ROOT, skip=()):
    """The tree at src (less .git, out/, caches and the top-level folders in skip) copied
    to dst, the named exercises blank. Every blanked file must still parse."""
    for d, dirs, files in os.walk(src):
        dirs[:] = [x for x in dirs if x not in SKIP_DIRS and not (d == src and x in skip)]
        rel = os.path.relpath(d, src)
        os.makedirs(os.path.join(dst, rel), exist_ok=True)
        for f in files:
            if f.endswith(".pyc"):
                continue
            path, out = os.path.join(d, f), os.path.join(dst, rel, f)
            if names and f.endswith(".py"):
                with open(path, encoding="utf-8") as fh:
                    text = fh.read()
                new = blank_text(os.path.relpath(path, src), text, names)
                if new != text:
                    ast.parse(new, filename=out)  # a student copy always imports
                with open(out, "w", encoding="utf-8") as fh:
                    fh.write(new)
                shutil.copymode(path, out)
            else:
                shutil.copy2(path, out)


def parse_only(only, ex):
    """--only a,b,c -> the set of names; an unknown one is an error listing the known."""
    names = {n.strip() for n in only.split(",") if n.strip()}
    unknown = sorted(names - set(ex))
    if unknown or not names:
        raise KitError(f"--only {only}: no such exercise {', '.join(unknown) or '(none named)'}"
                       f"; known: {', '.join(ex)}")
    return names


# -----------------------------------------------------------------------------
# running an exercise's tests

def run_tests(cwd, args, timeout=600):
    """python -m pytest ARGS in cwd -> a namespace: tests run (not skipped), failed
    (failures + errors), skipped, seconds, the output's tail, the exit code, and cases:
    {(classname, name): (outcome, message)} from the JUnit XML report."""
    with tempfile.TemporaryDirectory() as tmp:
        xml = os.path.join(tmp, "report.xml")
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
        t0 = time.time()
        p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                            f"--junitxml={xml}", *args], cwd=cwd, env=env, timeout=timeout,
                           capture_output=True, text=True)
        r = SimpleNamespace(tests=0, failed=0, skipped=0, seconds=time.time() - t0,
                            tail="\n".join((p.stdout + p.stderr).strip().split("\n")[-15:]),
                            code=p.returncode, cases={})
        if os.path.exists(xml):
            for case in ET.parse(xml).getroot().iter("testcase"):
                outcome, message = "passed", ""
                for child in case:
                    if child.tag in ("failure", "error", "skipped"):
                        outcome, message = child.tag, child.get("message") or ""
                r.cases[case.get("classname"), case.get("name")] = (outcome, message)
            r.skipped = sum(o == "skipped" for o, _ in r.cases.values())
            r.failed = sum(o in ("failure", "error") for o, _ in r.cases.values())
            r.tests = len(r.cases) - r.skipped
    return r


def case_key(nodeid):
    """A pytest node id as the JUnit report names it: (classname, name)."""
    path, _, name = nodeid.partition("::")
    return path[:-3].replace("/", "."), name


def marked_tests(root=ROOT):
    """{exercise name: {test id: the exercises it needs}} from the exercise marks on the
    tests collected in root, in collection order."""
    import pytest

    class Collect:
        def __init__(self):
            self.marks = {}

        def pytest_collection_finish(self, session):
            for item in session.items:
                for m in item.iter_markers("exercise"):
                    for name in m.args:
                        self.marks.setdefault(name, {})[item.nodeid] = tuple(
                            m.kwargs.get("needs", ()))
    c = Collect()
    with open(os.devnull, "w") as null:
        out, sys.stdout = sys.stdout, null
        try:
            code = pytest.main(["--collect-only", "-q", "-p", "no:cacheprovider",
                                "--rootdir", root, os.path.join(root, "tests")], plugins=[c])
        finally:
            sys.stdout = out
    if code != 0:
        raise KitError(f"collecting the tests failed (pytest exit {code})")
    return c.marks


def needs_of(tests):
    """{needed exercise: how many of these tests need it}, in first-seen order."""
    out = {}
    for needs in tests.values():
        for n in needs:
            out[n] = out.get(n, 0) + 1
    return out


# -----------------------------------------------------------------------------
# what docs/exercises.md must say (checked by `check` and tests/test_exercises.py)

def documented(root=ROOT):
    """The exercise names with a '## N. NAME' section in docs/exercises.md, in order."""
    return list(doc_sections(root))


def doc_sections(root=ROOT):
    """{name: the text of its '## N. NAME' section} of docs/exercises.md, in order."""
    path = os.path.join(root, DOCS)
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as f:
        parts = re.split(r"^(## .*)$", f.read(), flags=re.M)
    out = {}
    for head, body in zip(parts[1::2], parts[2::2]):
        m = re.match(r"## \d+\. `?(\w+)`?", head)
        if m:
            out[m.group(1)] = body
    return out


def tests_line(name, tests):
    n = len(tests)
    return f"`python -m pytest --exercise={name} -q` ({n} test{'s' if n != 1 else ''})"


def needs_line(tests):
    needs = needs_of(tests)
    if not needs:
        return "**Needs:** nothing else."
    return ("**Needs:** " + ", ".join(f"`{n}` (for {k} of the {len(tests)} tests)"
                                      for n, k in needs.items())
            + "; each of those tests skips, saying so, while one it needs is blank.")


def doc_problems(ex, marks, root=ROOT):
    """What docs/exercises.md gets wrong about the exercises: a section per exercise, in
    the order table's order, each with its test count and its needs as the marks say."""
    problems, secs = [], doc_sections(root)
    for name in ex:
        if name not in secs:
            problems.append(f"exercise {name} has no '## N. {name}' section in {DOCS}")
    for name in secs:
        if name not in ex:
            problems.append(f"{DOCS} lists exercise {name}, which no source file marks")
        elif name in marks:
            for want in (tests_line(name, marks[name]), needs_line(marks[name])):
                if " ".join(want.split()) not in " ".join(secs[name].split()):
                    problems.append(f"{DOCS}, section {name}: should say {want}")
    with open(os.path.join(root, DOCS), encoding="utf-8") as f:
        rows = re.findall(r"^\| \d+ \| `(\w+)` \|.*\| (\d+) \|$", f.read(), flags=re.M)
    if [name for name, _ in rows] != list(secs):
        problems.append(f"{DOCS}: the order table lists {[n for n, _ in rows]}, the sections "
                        f"are {list(secs)}")
    for name, lines in rows:
        if name in ex and int(lines) != ex[name][2]:
            problems.append(f"{DOCS}: the order table gives {name} {lines} solution lines; "
                            f"it has {ex[name][2]} (`list`)")
    return problems


# -----------------------------------------------------------------------------
# the commands

def ordered(ex):
    """The exercise names in docs/exercises.md's order, any undocumented ones last."""
    docs = documented()
    return sorted(ex, key=lambda n: docs.index(n) if n in docs else len(docs))


def cmd_list(args):
    ex, marks = find_exercises(), marked_tests()
    print(f"{'exercise':18s} {'where':18s} {'lines':>5s} {'tests':>5s}  needs (tests)")
    for name in ordered(ex):
        path, line, n = ex[name]
        tests = marks.get(name, {})
        needs = ", ".join(f"{k} ({v})" for k, v in needs_of(tests).items()) or "-"
        print(f"{name:18s} {path + ':' + str(line):18s} {n:5d} {len(tests):5d}  {needs}")
    print("each one's tests: python -m pytest --exercise=NAME -q")


def cmd_make(args):
    ex = find_exercises()
    names = set(ex) if args.only is None else parse_only(args.only, ex)
    if os.path.exists(args.dir) and os.listdir(args.dir):
        raise KitError(f"{args.dir} exists and is not empty: give a new folder")
    if os.path.abspath(args.dir).startswith(ROOT + os.sep):
        raise KitError(f"{args.dir} is inside the repository: give a folder outside it")
    copy_repo(args.dir, names)
    print(f"wrote {args.dir}: a student copy with {len(names)} exercise(s) blank: "
          + ", ".join(n for n in ordered(ex) if n in names))
    print(f"each one's tests: cd {args.dir} && python -m pytest --exercise=NAME -q "
          "(docs/exercises.md, 'Recommended order')")


def first_rule(outcome, message):
    """The first line of a failed or skipped test's message, as a grade table shows it."""
    line = (message.strip().split("\n") or [""])[0]
    if "NotImplementedError" in line:
        return "blank: " + line.split("NotImplementedError: ", 1)[-1]
    return re.sub(r"^(AssertionError|Failed): ", "", line) or outcome


def cmd_grade(args):
    """Copy the student's tree (less its tests/) beside this kit's tests, run every
    exercise's tests there, and print passed of total and the first broken rule."""
    ex = find_exercises()
    names = ordered(ex) if args.only is None else [
        n for n in ordered(ex) if n in parse_only(args.only, ex)]
    if not os.path.isdir(os.path.join(args.dir, "tests")) and not os.path.isfile(
            os.path.join(args.dir, "sample.py")):
        raise KitError(f"{args.dir}: not a copy of this repository (no sample.py): give the "
                       "folder `make` wrote, with the student's code in it")
    marks = marked_tests()
    with tempfile.TemporaryDirectory() as tmp:
        copy_repo(tmp, src=os.path.abspath(args.dir), skip=("tests",))
        copy_repo(os.path.join(tmp, "tests"), src=os.path.join(ROOT, "tests"))
        t0 = time.time()
        r = run_tests(tmp, [f"--exercise={','.join(names)}"], timeout=args.timeout)
    print(f"grading {args.dir} with this kit's tests ({time.time() - t0:.0f}s)\n")
    print(f"{'exercise':18s} {'passed':>9s}  first failing rule")
    failing, details = 0, []
    for name in names:
        tests = marks.get(name, {})
        got = [(t, *r.cases.get(case_key(t), ("missing", "not run (did the copy import?)")))
               for t in tests]
        passed = sum(o == "passed" for _, o, _ in got)
        bad = [(t, o, m) for t, o, m in got if o != "passed"]
        failing += passed < len(tests)
        rule = first_rule(*bad[0][1:]) if bad else ""
        if bad and bad[0][1] == "skipped":
            rule = f"skipped: {rule}"
        print(f"{name:18s} {f'{passed} of {len(tests)}':>9s}  {rule[:70]}")
        if bad:
            details.append(f"{name}: {bad[0][0]}\n    {bad[0][2].strip()[:600]}")
    if not r.cases:
        print(f"\nno test ran: pytest said\n{r.tail}")
    if details:
        print("\nthe first failing test of each exercise, in full:\n" + "\n".join(details))
    done = len(names) - failing
    print(f"\n{done} of {len(names)} exercises pass all their tests")
    return 0 if failing == 0 and r.cases else 1


def run_in_copy(blank, args):
    """run_tests in a temporary copy of the repository with the exercises `blank` blank;
    with nothing blank, in the repository itself."""
    if not blank:
        return run_tests(ROOT, args)
    with tempfile.TemporaryDirectory() as tmp:
        copy_repo(tmp, blank)
        return run_tests(tmp, args)


def cmd_check(args):
    """Nothing blank: every exercise's tests pass. One exercise blank alone: its own tests
    fail. It done and every other blank: its tests pass or skip (needing a blank one).
    Every exercise blank: every test of no exercise, less the end-to-end runs, passes.
    And docs/exercises.md agrees with the marks. Each is a pytest run of its own, run side
    by side on the CPU's cores."""
    ex = find_exercises()
    marks = marked_tests()
    problems = doc_problems(ex, marks)
    for name in ex:
        if name not in marks:
            problems.append(f"exercise {name} ({ex[name][0]}) has no test marked "
                            f"@pytest.mark.exercise({name!r})")
    for name, tests in marks.items():
        if name not in ex:
            problems.append(f"tests are marked exercise({name!r}), which no source file marks: "
                            + ", ".join(list(tests)[:3]))
        for n in needs_of(tests):
            if n not in ex or n == name:
                problems.append(f"tests of {name} need {n!r}: not another exercise")
    order = [n for n in ordered(ex) if n in marks]

    def own(name):  # only the files holding its tests: collecting the others is wasted time
        return sorted({t.split("::")[0] for t in marks[name]}) + [f"--exercise={name}"]
    jobs = dict(baseline=((), ["-m", "exercise"]),
                student=(set(ex), ["-m", "not exercise and not e2e"]))
    for name in order:
        jobs["alone", name] = ({name}, own(name))
        jobs["others blank", name] = (set(ex) - {name}, own(name))
    workers = args.jobs or min(4, os.cpu_count() or 1)
    print(f"{len(ex)} exercises: {len(jobs)} pytest runs, {workers} at a time ...", flush=True)
    t0 = time.time()
    with ThreadPoolExecutor(workers) as pool:
        futures = {k: pool.submit(run_in_copy, *v) for k, v in jobs.items()}
        res = {k: f.result() for k, f in futures.items()}

    r = res["baseline"]
    print(f"nothing blank: {r.tests} exercise tests, {r.failed} failed, {r.skipped} skipped "
          f"({r.seconds:.1f}s)")
    if r.failed or r.skipped or not r.tests:
        problems.append(f"with nothing blank, {r.failed} of {r.tests} exercise tests fail and "
                        f"{r.skipped} skip:\n{r.tail}")
    print(f"\n{'':18s} {'blank alone':>26s}   {'every other blank':>17s}")
    print(f"{'exercise':18s} {'tests run':>9s} {'failed':>7s} {'seconds':>8s}   "
          f"{'failed':>8s} {'skipped':>8s}  caught")
    for name in order:
        a, o = res["alone", name], res["others blank", name]
        caught = a.tests > 0 and a.failed == a.tests
        print(f"{name:18s} {a.tests:9d} {a.failed:7d} {a.seconds:8.1f}   {o.failed:8d} "
              f"{o.skipped:8d}  {'yes' if caught else 'NO'}")
        if not caught:
            passing = [n for (_, n), (o, _) in a.cases.items() if o == "passed"]
            problems.append(f"exercise {name} blank: {a.failed} of its {a.tests} tests fail; "
                            f"{', '.join(passing) or 'the rest'} pass without it, so they do not "
                            f"check it (mark them with what they check, or nothing)\n{a.tail}")
        if o.failed:
            blank = sorted(set(re.findall(r"exercise (\w+): your code here", o.tail)) - {name})
            problems.append(f"exercise {name}'s tests fail with every other exercise blank: "
                            f"a test needs {', '.join(blank) or 'another exercise'} and does "
                            f"not say so (@pytest.mark.exercise({name!r}, needs=(...)))"
                            f"\n{o.tail}")
    r = res["student"]
    print(f"\nevery exercise blank (a student copy): {r.tests} tests of no exercise, less the "
          f"end-to-end runs, {r.failed} failed ({r.seconds:.1f}s)")
    if r.failed or r.code not in (0, 5):
        problems.append(f"in a student copy, {r.failed} tests outside the exercises fail (mark "
                        f"them with the exercise they need, or e2e):\n{r.tail}")

    if problems:
        print("\nthe kit is broken:\n- " + "\n- ".join(problems))
        return 1
    print(f"\nthe kit holds: all {len(order)} exercises are caught by their own tests "
          f"({time.time() - t0:.0f}s)")
    return 0


def cmd_docs(args):
    """docs/exercises.md against the marks: the lines it should hold, and what is wrong."""
    ex, marks = find_exercises(), marked_tests()
    problems = doc_problems(ex, marks)
    for name in ordered(ex):
        print(f"{name}: {tests_line(name, marks.get(name, {}))}\n    "
              f"{needs_line(marks.get(name, {}))}")
    if problems:
        print(f"\n{DOCS} disagrees with the tests' marks:\n- " + "\n- ".join(problems))
        return 1
    print(f"\n{DOCS} agrees with the tests' marks")
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.strip().split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="the exercises in order: file, solution lines, tests, needs")
    mk = sub.add_parser("make", help="write a student copy of the repository")
    mk.add_argument("dir")
    mk.add_argument("--only", metavar="A,B,C", help="blank these exercises only (comma-separated)")
    gr = sub.add_parser("grade", help="run this kit's tests on a student's copy: passed of "
                        "total per exercise and the first failing rule; exit 1 unless all pass")
    gr.add_argument("dir", help="the student's copy (the folder `make` wrote)")
    gr.add_argument("--only", metavar="A,B,C", help="grade these exercises only (comma-separated)")
    gr.add_argument("--timeout", type=int, default=900,
                    help="seconds before the student's test run is stopped (default 900)")
    ck = sub.add_parser("check", help="prove every exercise is caught by its tests")
    ck.add_argument("--jobs", type=int, default=0,
                    help="pytest runs side by side (default: the CPU count, at most 4)")
    sub.add_parser("docs", help="check docs/exercises.md's test counts, needs and order "
                   "against the tests' marks, and print the lines it should hold")
    args = ap.parse_args(argv)
    try:
        return dict(list=cmd_list, make=cmd_make, grade=cmd_grade, check=cmd_check,
                    docs=cmd_docs)[args.cmd](args) or 0
    except (KitError, subprocess.TimeoutExpired) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
