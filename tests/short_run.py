"""
run_short.sh's self-check: read what the run printed, and say for each quantity its
expected range, the value, its standard error and whether it lands inside.

    python tests/short_run.py out/short/short_run.log      # the table (run_short.sh ends so)
    python tests/short_run.py --derive LOG LOG ...         # ranges from measured runs
    python tests/short_run.py --table                      # docs/exercises.md's table

RANGES is the one place the expected ranges live: docs/exercises.md's table is printed
from it (tests/test_short_run.py checks that the page holds it). They were derived with
--derive from six runs of `bash run_short.sh SEED` (seeds 1337 and 4 with
OMP_NUM_THREADS=2, seeds 2, 3, 5 and 6 with 1 thread; torch 2.13.0, 2 CPU cores): for
each quantity, from the lowest value less its standard error to the highest plus its.

The standard errors are the ones this table prints: a rate's binomial error over the
count the run prints beside it (pairs judged, prompts, comparisons without a tie), a mean
score's the largest a score in [0, 1] can have, sqrt(s (1 - s) / n).
"""
import math
import re
import sys

# quantity: (low, high), in the units printed (percentages as percent, scores as scores)
RANGES = {
    'JSFT policy: oracle score': (0.75, 0.889),
    'JSFT policy: fully right (%)': (30.2, 60.0),
    "judge on the policy's pairs: agreement (%)": (83.4, 94.4),
    "judge on the policy's pairs: follows the position (%)": (4.4, 12.1),
    'judge on held-out labels: agreement (%)': (84.5, 92.5),
    'judge on held-out labels: follows the position (%)': (4.6, 13.8),
    'best-of-2 winner: oracle score': (0.873, 0.962),
    'best-of-8 winner: oracle score': (0.939, 0.994),
    'table: JSFT score': (0.78, 0.868),
    'table: DPO win rate (%)': (76.9, 88.4),
    'table: SELF-JUDGE win rate (%)': (77.4, 99.1),
    'table: SELF-JUDGE - DPO win rate (points)': (-3.9, 17.8),
    'table: SELF-JUDGE + best-of-4 score': (0.928, 0.998),
}


def rate_se(pct, n):
    p = pct / 100
    return 100 * math.sqrt(max(p * (1 - p), 0.0) / max(n, 1))


def score_se(s, n):
    return math.sqrt(max(s * (1 - s), 0.0) / max(n, 1))


JUDGE_LINES = (  # the two lines jsft.py prints about its judge
    ("judge on the policy's pairs", r"agrees with the oracle on (?P<a>[\d.]+)% of the "
     r"(?P<n>\d+) pairs.*?decisions that follow the position on those pairs (?P<f>[\d.]+)%"),
    ("judge on held-out labels", r"judge: on the (?P<n>\d+) held-out labelled pairs it agrees "
     r"with the labels on (?P<a>[\d.]+)% and its decisions follow the position on "
     r"(?P<f>[\d.]+)%"))


def parse(text):
    """{quantity: (value, standard error)} from a short run's output; quantities it does
    not find are left out (the table says 'not printed')."""
    out = {}
    m = re.search(r"policy on (\d+) held-out prompts \(temperature 1\): oracle score "
                  r"([\d.]+), fully right ([\d.]+)%", text)
    if m:
        n, s, fr = int(m[1]), float(m[2]), float(m[3])
        out["JSFT policy: oracle score"] = (s, score_se(s, n))
        out["JSFT policy: fully right (%)"] = (fr, rate_se(fr, n))
    for what, pattern in JUDGE_LINES:  # n pairs judged: agreement a%, by position f%
        m = re.search(pattern, text)
        if m:
            n, a, f = int(m["n"]), float(m["a"]), float(m["f"])
            out[f"{what}: agreement (%)"] = (a, rate_se(a, n))
            out[f"{what}: follows the position (%)"] = (f, rate_se(f, n))
    m = re.search(r"self-rejection on (\d+) held-out prompts", text)
    if m:
        n = int(m[1])
        for k, s in re.findall(r"^\s+(\d+)\s+([\d.]+)\s", text[m.end():], flags=re.M):
            if k in ("2", "8"):
                out[f"best-of-{k} winner: oracle score"] = (float(s), score_se(float(s), n))
    m = re.search(r"(\d+) held-out prompts \(.*\) x (\d+) samples", text)
    if m:
        n = int(m[1]) * int(m[2])
        rows = {name.strip(): (float(w), float(t), float(s)) for name, w, t, s in re.findall(
            r"^(jsft|dpo|selfjudge|selfjudge \+ best-of-\d+)\s+([\d.]+)%\s+([\d.]+)%\s+"
            r"([\d.]+)\s", text[m.end():], flags=re.M)}

        def win(name):
            w, t, _ = rows[name]
            return w, rate_se(w, n * (1 - t / 100))
        if "jsft" in rows:
            s = rows["jsft"][2]
            out["table: JSFT score"] = (s, score_se(s, n))
        if "dpo" in rows:
            out["table: DPO win rate (%)"] = win("dpo")
        if "selfjudge" in rows:
            out["table: SELF-JUDGE win rate (%)"] = win("selfjudge")
        if "dpo" in rows and "selfjudge" in rows:
            (a, sa), (b, sb) = win("selfjudge"), win("dpo")
            out["table: SELF-JUDGE - DPO win rate (points)"] = (a - b, math.hypot(sa, sb))
        best = [k for k in rows if k.startswith("selfjudge + best-of")]
        if best:
            s = rows[best[0]][2]
            out["table: SELF-JUDGE + best-of-4 score"] = (s, score_se(s, n))
    return out


def check(text, ranges=RANGES):
    """(lines of the self-check table, every quantity printed and inside its range)."""
    got = parse(text)
    lines = [f"{'quantity':54s} {'expected':>15s} {'value':>8s} {'+- se':>6s}  ok"]
    good = True
    for name, (lo, hi) in ranges.items():
        if name not in got:
            lines.append(f"{name:54s} {f'{lo:g} to {hi:g}':>15s} {'-':>8s} {'':>6s}  "
                         "NO: not printed")
            good = False
            continue
        v, se = got[name]
        ok = lo <= v <= hi
        good &= ok
        lines.append(f"{name:54s} {f'{lo:g} to {hi:g}':>15s} {v:8.3f} {se:6.3f}  "
                     f"{'ok' if ok else 'NO'}")
    return lines, good


def derive(texts, digits=3):
    """{quantity: (min(value - se), max(value + se))} over runs, rounded outwards."""
    runs = [parse(t) for t in texts]
    out = {}
    for name in RANGES:
        vals = [r[name] for r in runs if name in r]
        if vals:
            f = 10 ** (digits if "score" in name else 1)
            out[name] = (math.floor(min(v - s for v, s in vals) * f) / f,
                         math.ceil(max(v + s for v, s in vals) * f) / f)
    return out


def doc_table(ranges=RANGES):
    """docs/exercises.md's table of the short run's ranges."""
    rows = ["| quantity | expected range |", "|---|---|"]
    rows += [f"| {name} | {lo:g} to {hi:g} |" for name, (lo, hi) in ranges.items()]
    return "\n".join(rows)


def main(argv):
    if argv[:1] == ["--table"]:
        print(doc_table())
        return 0
    if argv[:1] == ["--derive"] and argv[1:]:
        texts = [open(p, encoding="utf-8").read() for p in argv[1:]]
        for name, (lo, hi) in derive(texts).items():
            print(f"    {name!r}: ({lo}, {hi}),")
        for p, t in zip(argv[1:], texts):
            print(p, {k: round(v, 3) for k, (v, _) in parse(t).items()})
        return 0
    if len(argv) != 1 or argv[0].startswith("-"):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    with open(argv[0], encoding="utf-8") as f:
        lines, good = check(f.read())
    print("\nself-check: this run against the ranges measured over seeds and thread counts\n"
          "(tests/short_run.py, docs/exercises.md, \"The short run\")")
    print("\n".join(lines))
    print("every quantity is inside its range" if good else
          "some quantity is outside its range (NO): a seed can land just outside, but more "
          "than one NO points at a bug; run the exercises' tests")
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
