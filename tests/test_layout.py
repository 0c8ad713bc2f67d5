"""The layout the code promises its readers: each file imports only from the files above
it in docs/design.md's pipeline, and the method's seven files stay a sitting's read.

    python -m pytest tests/test_layout.py -q     (from the repository root; a second)
"""
import ast
import glob
import os
import re

from conftest import ROOT

SCRIPTS = ("model.py", "common.py", "sample.py", "judge.py", "evaluate.py", "jsft.py",
           "selfjudge.py")
MAX_LINES, MAX_FUNCTION = 500, 60  # a few hundred lines a script; a function you hold in your head


def pipeline():
    """The files of docs/design.md's pipeline block, top to bottom ("data/" for the folder)."""
    with open(os.path.join(ROOT, "docs", "design.md"), encoding="utf-8") as f:
        block = f.read().split("## The pipeline", 1)[1].split("```")[1]
    return re.findall(r"^([\w/]+\.py|data/)\s", block, re.M)


def project_imports(path):
    """The project's modules a file imports: "data/" for data.*, else the file name."""
    found = set()
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                 [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
        for name in names:
            top = name.split(".")[0]
            if top == "data":
                found.add("data/")
            elif os.path.isfile(os.path.join(ROOT, top + ".py")):
                found.add(top + ".py")
    return found


def test_each_file_imports_only_from_files_above_it():
    """A reader can start at data/ and read down: model.py never needs sample.py, and no
    stage reaches into another stage. Importing jsft.py's batch_loss from evaluate.py, say,
    would put the stages above the measurement they use."""
    order = pipeline()
    assert order[:2] == ["data/", "model.py"] and "selfjudge.py" in order, order
    files = {name: sorted(glob.glob(os.path.join(ROOT, "data", "*.py"))) if name == "data/"
             else [os.path.join(ROOT, name)] for name in order}
    wrong = []
    for i, name in enumerate(order):
        allowed = set(order[:i]) | ({"data/"} if name == "data/" else set())
        for path in files[name]:
            wrong += [f"{os.path.relpath(path, ROOT)} imports {m}"
                      for m in sorted(project_imports(path) - allowed)]
    assert not wrong, ("imports against docs/design.md's pipeline (a file may import only "
                       "from the files above it): " + "; ".join(wrong))


def test_the_method_scripts_read_in_one_sitting():
    """Each of the pipeline's files a few hundred lines (at most 500: code goes where it
    belongs, not where a line count pushes it), no function longer than about 60."""
    long = []
    for name in SCRIPTS:
        source = open(os.path.join(ROOT, name), encoding="utf-8").read()
        if len(source.splitlines()) > MAX_LINES:
            long.append(f"{name}: {len(source.splitlines())} lines")
        long += [f"{name}: {n.name} is {n.end_lineno - n.lineno + 1} lines"
                 for n in ast.walk(ast.parse(source)) if isinstance(n, ast.FunctionDef)
                 and n.end_lineno - n.lineno + 1 > MAX_FUNCTION]
    assert not long, f"over {MAX_LINES} lines a script or {MAX_FUNCTION} a function: {long}"
