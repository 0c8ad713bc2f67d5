"""
Pictures: the curves a reader would rather look at than read, drawn as SVG by a small
function below (no plotting library), from what the stages wrote: each run folder's
metrics.jsonl, and evaluate.py's best_of.json.

    python plot.py                                  # the runs of `bash run.sh` -> out/img
    python plot.py --runs=out,out/seed2,out/seed3 --to=docs/img/sort   # seeds averaged

A root in --runs holds the run folders of one seed, as run.sh writes them: selfjudge,
offpolicy, dpo, raft, dpo_kK (offline DPO on pairs K mistakes further from the policy),
jsft/best_of.json, overopt and overopt_guard. A figure whose runs are missing is
skipped.
"""
import json
import math
import os
import sys
from html import escape

from common import parse_flags

# -----------------------------------------------------------------------------
# settings (override with --name=value)
defaults = dict(
    runs="out",               # run roots, comma-separated (one per seed): averaged
    to="out/img",             # where the .svg files go
    task="sort",              # the task's name, for titles and file names
    smooth=10,                # per-step curves: mean over this many steps
)
limits = dict(smooth="[1, inf)")

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#7f7f7f")
MODES = (("selfjudge", "SELF-JUDGE (on-policy)"), ("offpolicy", "off-policy"),
         ("dpo", "offline DPO"), ("raft", "RAFT"))


# -----------------------------------------------------------------------------
# a line chart in SVG

def nice_ticks(lo, hi, n=5):
    """About n round numbers spanning [lo, hi]."""
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / n
    step = 10 ** math.floor(math.log10(raw))
    step *= next(m for m in (1, 2, 2.5, 5, 10) if m * step >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    return [round(first + i * step, 10) for i in range(int((hi - first) / step + 1e-9) + 1)]


def line_chart(series, title, xlabel, ylabel, ylim=None, xticks=None, w=860, h=360):
    """SVG text of a line chart, its legend on the right. series: dicts with label, x, y
    (equal-length lists; None in y is a gap), and optionally dash=True, faint=True (a thin
    line without a legend entry), color, and lo, hi (lists like y: a shaded band around
    the line, e.g. the range over seeds). xticks: [(x, label)] to override the ticks."""
    L, R, T, B = 64, 250, 36, 48  # margins; the legend sits in the right one
    xs = [x for s in series for x in s["x"]]
    ys = [y for s in series for k in ("y", "lo", "hi") for y in s.get(k) or [] if y is not None]
    if not xs or not ys:
        raise ValueError(f"{title}: nothing to draw")
    x0, x1 = min(xs), max(xs)
    y0, y1 = ylim or (min(ys), max(ys))
    if y1 - y0 < 1e-9:
        y0, y1 = y0 - 0.5, y1 + 0.5
    X = lambda x: L + (x - x0) / ((x1 - x0) or 1) * (w - L - R)  # noqa: E731
    Y = lambda y: h - B - (y - y0) / (y1 - y0) * (h - T - B)     # noqa: E731
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
           f'viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">',
           f'<rect width="{w}" height="{h}" fill="white"/>',
           f'<text x="{w / 2}" y="20" text-anchor="middle" font-size="14">{escape(title)}</text>']
    for v in nice_ticks(y0, y1):
        out.append(f'<line x1="{L}" x2="{w - R}" y1="{Y(v):.1f}" y2="{Y(v):.1f}" stroke="#ddd"/>'
                   f'<text x="{L - 6}" y="{Y(v) + 4:.1f}" text-anchor="end">{v:g}</text>')
    for v, label in xticks or [(v, f"{v:g}") for v in nice_ticks(x0, x1)]:
        out.append(f'<text x="{X(v):.1f}" y="{h - B + 16}" text-anchor="middle">'
                   f'{escape(str(label))}</text>')
    out.append(f'<line x1="{L}" x2="{w - R}" y1="{h - B}" y2="{h - B}" stroke="black"/>'
               f'<line x1="{L}" x2="{L}" y1="{T}" y2="{h - B}" stroke="black"/>'
               f'<text x="{(L + w - R) / 2}" y="{h - 10}" text-anchor="middle">'
               f'{escape(xlabel)}</text><text transform="translate(14 {(T + h - B) / 2}) '
               f'rotate(-90)" text-anchor="middle">{escape(ylabel)}</text>')
    for i, s in enumerate(series):  # bands first, under every line
        if s.get("lo"):
            edge = [(X(x), Y(y)) for x, y in zip(s["x"], s["hi"])] + \
                [(X(x), Y(y)) for x, y in reversed(list(zip(s["x"], s["lo"])))]
            out.append(f'<polygon fill="{s.get("color", COLORS[i % len(COLORS)])}" '
                       'fill-opacity="0.15" stroke="none" points="'
                       + " ".join(f"{x:.1f},{y:.1f}" for x, y in edge) + '"/>')
    legend = 0
    for i, s in enumerate(series):
        color = s.get("color", COLORS[i % len(COLORS)])
        style = (' stroke-dasharray="6 4"' if s.get("dash") else "") + \
            (' stroke-width="1" stroke-opacity="0.35"' if s.get("faint") else ' stroke-width="2"')
        for part in _runs(s["x"], s["y"]):  # a None in y breaks the line
            pts = " ".join(f"{X(x):.1f},{Y(y):.1f}" for x, y in part)
            out.append(f'<polyline fill="none" stroke="{color}"{style} points="{pts}"/>')
            if len(s["x"]) <= 12 and not s.get("faint"):  # few points: mark them
                out += [f'<circle cx="{X(x):.1f}" cy="{Y(y):.1f}" r="3" fill="{color}"/>'
                        for x, y in part]
        if not s.get("faint"):
            ly = T + 8 + 18 * legend
            out.append(f'<line x1="{w - R + 12}" x2="{w - R + 36}" y1="{ly}" y2="{ly}" '
                       f'stroke="{color}"{style}/><text x="{w - R + 42}" y="{ly + 4}">'
                       f'{escape(s["label"])}</text>')
            legend += 1
    return "\n".join(out + ["</svg>"]) + "\n"


def _runs(xs, ys):
    """The stretches of (x, y) points between None values of y."""
    part = []
    for x, y in zip(xs, ys):
        if y is None:
            if part:
                yield part
            part = []
        else:
            part.append((x, y))
    if part:
        yield part


# -----------------------------------------------------------------------------
# the figures

def read_metrics(folder):
    """The rows of folder/metrics.jsonl, or None if the run is missing."""
    path = os.path.join(folder, "metrics.jsonl")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return [json.loads(line) for line in f]


def curve(rows, key, smooth=1):
    """(steps, values) of one metric; smooth > 1: the mean of the last `smooth` values."""
    pts = [(r["step"], r[key]) for r in rows if r.get(key) is not None and r[key] == r[key]]
    steps, vals = [s for s, _ in pts], [v for _, v in pts]
    if smooth > 1:
        window = [vals[max(0, i - smooth + 1):i + 1] for i in range(len(vals))]
        vals = [sum(w) / len(w) for w in window]
    return steps, vals


def seeds_and_mean(roots, sub, key, label, color, smooth=1, dash=False):
    """One metric of run `sub` under every root: the mean over the seeds, at the steps
    every seed logged, with their range (lowest to highest) as a band."""
    runs = [read_metrics(os.path.join(r, sub)) for r in roots]
    curves = [curve(rows, key, smooth) for rows in runs if rows]
    curves = [dict(zip(*c)) for c in curves if c[0]]
    if not curves:
        return []
    common = sorted(set.intersection(*(set(c) for c in curves)))
    at = [[c[s] for c in curves] for s in common]
    band = dict(lo=[min(v) for v in at], hi=[max(v) for v in at]) if len(curves) > 1 else {}
    return [dict(label=label, x=common, y=[sum(v) / len(v) for v in at], color=color,
                 dash=dash, **band)]


def far_runs(roots):
    """{K: run folder name} of offline DPO on pairs K mistakes further from the policy
    (run.sh's dpo_kK, made with the task generator's --pair_extra_mistakes=K; dpo is K=0),
    for the K that every root holds."""
    ks = [{int(d[len("dpo_k"):]) for d in os.listdir(r) if d.startswith("dpo_k")
           and d[len("dpo_k"):].isdigit()} if os.path.isdir(r) else set() for r in roots]
    return {0: "dpo", **{k: f"dpo_k{k}" for k in sorted(set.intersection(*ks))}}


def gap_series(roots, far):
    """SELF-JUDGE's win rate minus offline DPO's at each distance K of far: the last
    evaluation both runs of a seed logged; the mean over seeds, with the range."""
    gaps = {}
    for k, sub in far.items():
        for r in roots:
            on, off = (dict(zip(*curve(read_metrics(os.path.join(r, s)) or [],
                                       "eval_win_rate_vs_ref"))) for s in ("selfjudge", sub))
            both = sorted(set(on) & set(off))
            if both:
                gaps.setdefault(k, []).append(on[both[-1]] - off[both[-1]])
    ks = [k for k in far if len(gaps.get(k, [])) == len(roots)]
    if len(ks) < 2:
        return []
    g = [gaps[k] for k in ks]
    band = dict(lo=[min(v) for v in g], hi=[max(v) for v in g]) if len(roots) > 1 else {}
    return [dict(label="SELF-JUDGE - offline DPO", x=ks, y=[sum(v) / len(v) for v in g],
                 color=COLORS[0], **band),
            dict(label="no difference", x=[ks[0], ks[-1]], y=[0, 0], color=COLORS[6],
                 dash=True)]


def figures(cfg):
    """{file name: SVG text} for every figure whose runs exist."""
    roots, out = cfg.runs.split(","), {}
    task = cfg.task + (f" ({len(roots)} seeds: mean, band: range)" if len(roots) > 1 else "")
    far = far_runs(roots)
    modes = [s for i, (sub, label) in enumerate(MODES)
             for s in seeds_and_mean(roots, sub, "eval_win_rate_vs_ref", label, COLORS[i])]
    greens = ("#74c476", "#006d2c", "#00441b")  # offline DPO's colour, darker the further
    modes += [s for k, sub in far.items() if k
              for s in seeds_and_mean(roots, sub, "eval_win_rate_vs_ref",
                                      f"offline DPO, pairs +{k} mistakes",
                                      greens[min(k, 3) - 1], dash=True)]
    if modes:
        out[f"{cfg.task}_modes.svg"] = line_chart(
            modes, f"{task}: win rate against JSFT, by training mode", "step",
            "win rate vs JSFT (oracle, held-out prompts)")
        print(table(modes, f"{task}: win rate against JSFT by step (each run's evaluations)",
                    every=math.ceil(len(modes[0]["x"]) / 9)))
    gap = gap_series(roots, far)
    if gap:
        out[f"{cfg.task}_gap.svg"] = line_chart(
            gap, f"{task}: how far the offline pairs lie from the policy, and the gap",
            "extra mistakes in each response of the offline pairs (--pair_extra_mistakes)",
            "win rate at the last evaluation: SELF-JUDGE - DPO", xticks=[(k, k) for k in gap[0]["x"]])
        print(table(gap[:1], f"{task}: SELF-JUDGE's win rate minus offline DPO's, at the last "
                             "evaluation, by --pair_extra_mistakes"))
    agree = (seeds_and_mean(roots, "selfjudge", "oracle_agree_kept", "pairs trained on",
                            COLORS[0], cfg.smooth)
             + seeds_and_mean(roots, "selfjudge", "oracle_agree_all", "all pairs judged",
                              COLORS[1], cfg.smooth, dash=True)
             + seeds_and_mean(roots, "selfjudge", "kept", "share kept (|2p-1| >= 0.5)",
                              COLORS[2], cfg.smooth)
             + seeds_and_mean(roots, "selfjudge", "judge_by_position", "decisions by position",
                              COLORS[3], cfg.smooth))
    if agree:  # the guard's line: selfjudge.py stops where 50 steps' mean crosses it
        agree.append(dict(label="guard (--max_position_bias)", x=[0, agree[0]["x"][-1]],
                          y=[0.25, 0.25], color=COLORS[3], dash=True))
        out[f"{cfg.task}_judge.svg"] = line_chart(
            agree, f"{task}: the frozen judge on each step's pairs, against the oracle",
            "step", f"agreement / share (mean of {cfg.smooth} steps)", ylim=(0, 1))
    best = best_of_series(roots)
    if best:
        out[f"{cfg.task}_best_of.svg"] = line_chart(
            best, f"{task}: self-rejection, the tournament's pick among N samples",
            "N samples per prompt (the knockout spends N - 1 judgments)",
            "oracle score of the pick", xticks=[(x, 2 ** round(x)) for x in best[-1]["x"]])
    over = (seeds_and_mean(roots, "overopt", "eval_oracle_score", "aggressive: oracle score",
                           COLORS[1])
            + seeds_and_mean(roots, "overopt", "eval_judge_pref", "aggressive: judge_pref",
                             COLORS[1], dash=True)
            + seeds_and_mean(roots, "overopt_guard", "eval_oracle_score",
                             "defaults: oracle score", COLORS[0])
            + seeds_and_mean(roots, "overopt_guard", "eval_judge_pref", "defaults: judge_pref",
                             COLORS[0], dash=True))
    why = (seeds_and_mean(roots, "overopt", "oracle_agree_kept", "aggressive: judge right",
                          COLORS[1], cfg.smooth)
           + seeds_and_mean(roots, "overopt", "judge_by_position", "aggressive: by position",
                            COLORS[1], cfg.smooth, dash=True)
           + seeds_and_mean(roots, "overopt_guard", "oracle_agree_kept", "defaults: judge right",
                            COLORS[0], cfg.smooth)
           + seeds_and_mean(roots, "overopt_guard", "judge_by_position", "defaults: by position",
                            COLORS[0], cfg.smooth, dash=True))
    if why:
        out[f"{cfg.task}_overopt_judge.svg"] = line_chart(
            why, f"{task}: why: is the weak judge right on the pairs each step trains on?", "step",
            f"share (mean of {cfg.smooth} steps)", ylim=(0, 1))
    if over:
        out[f"{cfg.task}_overopt.svg"] = line_chart(
            over, f"{task}: over-optimising a weak judge, and the defaults' guard", "step",
            "oracle score / judge's preference")
    return out


def best_of_series(roots):
    """The best-of-N curve (evaluate.py --best_of writes jsft/best_of.json), averaged over
    roots: the tournament's pick, a random pick, the oracle's own pick; x is log2 N."""
    tables = []
    for r in roots:
        path = os.path.join(r, "jsft", "best_of.json")
        if os.path.isfile(path):
            with open(path) as f:
                tables.append(json.load(f))
    if not tables:
        return []
    ns = sorted(set.intersection(*(set(map(int, t)) for t in tables)))
    mean = lambda k: [sum(t[str(n)][k] for t in tables) / len(tables) for n in ns]  # noqa
    x = [math.log2(n) for n in ns]
    return [dict(label="oracle's own pick (ceiling)", x=x, y=mean("oracle"),
                 color=COLORS[2], dash=True),
            dict(label="random pick", x=x, y=mean("random"), color=COLORS[6], dash=True),
            dict(label="tournament of self-judgments", x=x, y=mean("winner"),
                 color=COLORS[0])]


def table(series, title, every=1):
    """The text of a figure's numbers: a row per series, a column per x of its first
    series (every `every`-th one), each cell the mean and, for several seeds, the range."""
    xs = series[0]["x"][::every]
    cell = lambda s, i: f"{s['y'][i]:.3f}" + (  # noqa: E731
        f" ({s['lo'][i]:.2f} to {s['hi'][i]:.2f})" if s.get("lo") else "")
    cells = [[cell(s, s["x"].index(x)) if x in s["x"] else "-" for x in xs] for s in series]
    w = max(len(c) for row in cells for c in row) + 2
    rows = [f"{title}\n{'':32s}" + "".join(f"{x:>{w}g}" for x in xs)]
    rows += [f"{s['label'][:32]:32s}" + "".join(f"{c:>{w}s}" for c in row)
             for s, row in zip(series, cells)]
    return "\n".join(rows)


def main(argv=None):
    cfg = parse_flags(defaults, argv, __file__, limits)
    figs = figures(cfg)
    if not figs:
        sys.exit(f"error: no runs to draw under {cfg.runs} (run `bash run.sh` first)")
    os.makedirs(cfg.to, exist_ok=True)
    for name, svg in figs.items():
        with open(os.path.join(cfg.to, name), "w") as f:
            f.write(svg)
    print(f"wrote {', '.join(figs)} to {cfg.to}")


if __name__ == "__main__":
    try:
        main()
    except (ValueError, OSError) as e:
        sys.exit(f"error: {e}")
