"""run_short.sh's self-check (tests/short_run.py): it reads every quantity a short run
prints, says ok inside the ranges and NO outside, and docs/exercises.md shows the same
ranges it checks.

    python -m pytest tests/test_short_run.py -q     (from the repository root; a second)
"""
import os

import short_run
from conftest import ROOT

LOG = os.path.join(ROOT, "tests", "fixtures", "short_run_s6.log")  # seed 6, 1 thread


def text():
    with open(LOG, encoding="utf-8") as f:
        return f.read()


def test_every_quantity_of_a_real_run_is_read_and_inside_its_range():
    got = short_run.parse(text())
    assert set(got) == set(short_run.RANGES), (
        f"the self-check reads every quantity it has a range for; missing "
        f"{set(short_run.RANGES) - set(got)}")
    assert got["table: SELF-JUDGE win rate (%)"][0] == 91.6, "the table's selfjudge row"
    assert got["judge on the policy's pairs: agreement (%)"][0] == 92.8, "jsft.py's judge line"
    lines, good = short_run.check(text())
    assert good and all(line.endswith("ok") for line in lines[1:]), "\n".join(lines)


def test_a_value_outside_its_range_says_no_and_fails():
    """The run whose JSFT policy scores 0.791 against a range made to exclude it."""
    ranges = dict(short_run.RANGES, **{"JSFT policy: oracle score": (0.8, 0.9)})
    lines, good = short_run.check(text(), ranges)
    bad = [line for line in lines if line.endswith("NO")]
    assert not good and len(bad) == 1 and bad[0].startswith("JSFT policy: oracle score"), (
        "a value outside its range is marked NO, and only it:\n" + "\n".join(lines))
    lines, good = short_run.check("nothing printed")
    assert not good and all("not printed" in line for line in lines[1:]), (
        "a run that printed nothing fails every line of the self-check")


def test_the_documented_ranges_are_the_ones_checked():
    with open(os.path.join(ROOT, "docs", "exercises.md"), encoding="utf-8") as f:
        doc = f.read()
    assert short_run.doc_table() in doc, (
        "docs/exercises.md, 'The short run', must hold the table that "
        "`python tests/short_run.py --table` prints from RANGES")


def test_ranges_are_min_and_max_widened_by_the_standard_error():
    runs = [t.replace("oracle score 0.791", f"oracle score {s}") for t in [text()] * 2
            for s in ("0.791",)] + [text().replace("oracle score 0.791", "oracle score 0.850")]
    lo, hi = short_run.derive(runs)["JSFT policy: oracle score"]
    se = short_run.score_se(0.791, 100), short_run.score_se(0.85, 100)
    assert abs(lo - (0.791 - se[0])) < 1e-3 and abs(hi - (0.85 + se[1])) < 1e-3, (
        f"derive: from the lowest value less its error to the highest plus its: {lo}, {hi}")
