"""The classroom kit's own commands (tests/exercises.py): docs/exercises.md agrees with
the tests' marks, --only takes several names, a test waiting for a blank exercise skips,
and `grade` scores a copy exercise by exercise. The full `check` runs in CI after the
suite (`python tests/exercises.py check`, about 2 minutes).

    python -m pytest tests/test_exercises.py -q     (from the repository root; ~20 s)
"""
import os
import subprocess
import sys

import pytest

import exercises
from conftest import ROOT

KIT = [sys.executable, os.path.join(ROOT, "tests", "exercises.py")]


def kit(*args, cwd=ROOT):
    p = subprocess.run(KIT + list(args), cwd=cwd, capture_output=True, text=True, timeout=600)
    return p.returncode, p.stdout + p.stderr


@pytest.mark.e2e  # the kit on the teacher's copy: a student copy's solutions are blank
def test_the_exercise_page_agrees_with_the_marks():
    """Each section's test count and needs, and the order table's solution lengths, are
    what the marks and the markers say (the counts had drifted by hand)."""
    code, out = kit("docs")
    assert code == 0, out


def test_only_takes_several_names_and_refuses_unknown_ones():
    ex = exercises.find_exercises()
    assert exercises.parse_only("dpo_loss, make_pairs", ex) == {"dpo_loss", "make_pairs"}, (
        "--only a,b names several exercises")
    with pytest.raises(exercises.KitError, match="no such exercise dpo_los; known: "):
        exercises.parse_only("dpo_loss,dpo_los", ex)


@pytest.mark.e2e
def test_blank_exercises_are_found_and_a_written_one_is_not(tmp_path):
    exercises.copy_repo(str(tmp_path / "a"), {"swap_average", "dpo_loss"})
    assert exercises.blank_exercises(str(tmp_path / "a")) == {"swap_average", "dpo_loss"}, (
        "a region holding only make's raise is blank")
    assert exercises.blank_exercises(ROOT) == set(), "the solutions are not blank"


@pytest.mark.e2e
def test_grade_a_blank_copy_scores_zero_and_a_solved_one_passes(tmp_path):
    """grade runs this kit's tests on the copy: with swap_average and make_pairs blank each
    reads 0 of N and the exit is 1; a copy with the solutions passes, exit 0. decision_probs'
    tests that need swap_average skip, saying so."""
    blank, solved = str(tmp_path / "blank"), str(tmp_path / "solved")
    exercises.copy_repo(blank, {"swap_average", "make_pairs"})
    exercises.copy_repo(solved)
    code, out = kit("grade", blank, "--only", "swap_average,make_pairs,decision_probs")
    assert code == 1, out
    rows = {line.split()[0]: line for line in out.splitlines() if line[:1].isalpha()}
    assert "0 of 4" in rows["swap_average"] and "blank: exercise swap_average" in \
        rows["swap_average"], out
    assert "0 of 3" in rows["make_pairs"], out
    assert "2 of 9" in rows["decision_probs"] and "skipped: needs exercise swap_average" in \
        rows["decision_probs"], out
    code, out = kit("grade", solved, "--only", "swap_average,make_pairs")
    assert code == 0 and "2 of 2 exercises pass" in out, out


def test_progress_prints_a_line_a_tenth_when_output_is_not_a_terminal(capsys):
    """With output in a file the bars turned off and a run said nothing for minutes."""
    from common import progress
    bar = progress(range(20), 20, "jsft", every=0.25, seconds=1e9)
    for i in bar:
        bar.set_postfix(loss=f"{i:.1f}")
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(",")[0] for line in lines] == [
        "jsft: 5 of 20 (25%)", "jsft: 10 of 20 (50%)", "jsft: 15 of 20 (75%)",
        "jsft: 20 of 20 (100%)"], lines
    assert lines[-1].endswith("loss 19.0"), lines
