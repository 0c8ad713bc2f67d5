"""Pictures (plot.py): the SVG writer and the figures drawn from run folders.

    python -m pytest tests/test_plot.py -q     (from the repository root; a second)
"""
import json
import os
import xml.etree.ElementTree as ET

import pytest

import plot

SVG = "{http://www.w3.org/2000/svg}"


def test_line_chart_is_well_formed_svg_with_a_line_per_stretch_and_a_legend():
    svg = plot.line_chart([dict(label="a & b", x=[0, 1, 2, 3], y=[0.1, 0.5, None, 0.9]),
                           dict(label="", x=[0, 3], y=[0.2, 0.2], faint=True),
                           dict(label="c", x=[0, 3], y=[0.3, 0.4], dash=True)],
                          "title <1>", "step", "score", ylim=(0, 1))
    root = ET.fromstring(svg)  # parses: well formed, special characters escaped
    lines = root.findall(f"{SVG}polyline")
    assert len(lines) == 4  # the gap splits the first series in two
    assert lines[0].get("points").count(",") == 2 and lines[1].get("points").count(",") == 1
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "title <1>" in texts and "a & b" in texts and "c" in texts
    assert "" not in texts  # the faint line has no legend entry
    assert any(x.get("stroke-dasharray") for x in lines)


def test_line_chart_refuses_an_empty_figure():
    with pytest.raises(ValueError, match="nothing to draw"):
        plot.line_chart([dict(label="a", x=[], y=[])], "t", "x", "y")


def test_nice_ticks_are_round_and_within_the_range():
    assert plot.nice_ticks(0, 1) == [0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert plot.nice_ticks(0.62, 0.97) == pytest.approx([0.7, 0.8, 0.9])
    assert plot.nice_ticks(0, 150) == [0, 50, 100, 150]


def write_run(folder, rows):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "metrics.jsonl"), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)


def test_figures_average_the_seeds_and_skip_missing_runs(tmp_path, capsys):
    for seed, shift in (("s1", 0.0), ("s2", 0.1)):
        write_run(tmp_path / seed / "selfjudge",
                  [dict(step=0, eval_win_rate_vs_ref=0.5 + shift)]
                  + [dict(step=i, oracle_agree_kept=0.9, kept=0.5) for i in (1, 2)]
                  + [dict(step=3, eval_win_rate_vs_ref=0.7 + shift)])
        write_run(tmp_path / seed / "dpo", [dict(step=0, eval_win_rate_vs_ref=0.5 + shift),
                                            dict(step=3, eval_win_rate_vs_ref=0.6 + shift)])
    os.makedirs(tmp_path / "s1" / "jsft")
    with open(tmp_path / "s1" / "jsft" / "best_of.json", "w") as f:
        json.dump({"1": dict(winner=0.5, random=0.5, oracle=0.5),
                   "2": dict(winner=0.6, random=0.5, oracle=0.7)}, f)
    cfg = plot.parse_flags(plot.defaults, [f"--runs={tmp_path}/s1,{tmp_path}/s2",
                                           f"--to={tmp_path}/img"])
    figs = plot.figures(cfg)
    assert sorted(figs) == ["sort_best_of.svg", "sort_judge.svg", "sort_modes.svg"]
    modes = ET.fromstring(figs["sort_modes.svg"])
    means = [p.get("points") for p in modes.iter(f"{SVG}polyline")
             if p.get("stroke-width") == "2"]
    assert len(means) == 2  # SELF-JUDGE and DPO; off-policy and raft are missing
    assert len(modes.findall(f"{SVG}polygon")) == 2  # each with the seeds' range
    texts = [t.text for t in modes.iter(f"{SVG}text")]
    assert "SELF-JUDGE (on-policy)" in texts
    assert any("(2 seeds: mean, band: range)" in t for t in texts)
    plot.main([f"--runs={tmp_path}/s1,{tmp_path}/s2", f"--to={tmp_path}/img"])
    assert sorted(os.listdir(tmp_path / "img")) == sorted(figs)
    with pytest.raises(SystemExit, match="no runs to draw"):
        plot.main([f"--runs={tmp_path}/nothing", f"--to={tmp_path}/img2"])


def test_gap_figure_is_selfjudge_minus_offline_dpo_by_the_pairs_distance(tmp_path, capsys):
    """dpo_kK beside dpo: offline DPO on pairs K mistakes further from the policy. The gap
    at each K is SELF-JUDGE's last win rate minus that run's, averaged over seeds, and
    the range of the seeds spans their lowest and highest gap."""
    for seed, shift in (("s1", 0.0), ("s2", 0.1)):
        write_run(tmp_path / seed / "selfjudge", [dict(step=0, eval_win_rate_vs_ref=0.5),
                                                  dict(step=4, eval_win_rate_vs_ref=0.9)])
        for sub, last in (("dpo", 0.8), ("dpo_k1", 0.7), ("dpo_k2", 0.5)):
            write_run(tmp_path / seed / sub, [dict(step=0, eval_win_rate_vs_ref=0.5),
                                              dict(step=4, eval_win_rate_vs_ref=last - shift)])
    cfg = plot.parse_flags(plot.defaults, [f"--runs={tmp_path}/s1,{tmp_path}/s2"])
    assert plot.far_runs(cfg.runs.split(",")) == {0: "dpo", 1: "dpo_k1", 2: "dpo_k2"}
    gap = plot.gap_series(cfg.runs.split(","), plot.far_runs(cfg.runs.split(",")))
    assert gap[0]["x"] == [0, 1, 2]
    assert gap[0]["y"] == pytest.approx([0.15, 0.25, 0.45])  # 0.9 - (0.8, 0.7): mean 0.15
    assert gap[0]["lo"] == pytest.approx([0.1, 0.2, 0.4])
    assert gap[0]["hi"] == pytest.approx([0.2, 0.3, 0.5])
    figs = plot.figures(cfg)
    assert "sort_gap.svg" in figs
    printed = capsys.readouterr().out  # the figures' numbers, for a reader who greps
    assert "SELF-JUDGE - offline DPO" in printed and "0.150 (0.10 to 0.20)" in printed
    assert "0.450 (0.40 to 0.50)" in printed
    texts = [t.text for t in ET.fromstring(figs["sort_modes.svg"]).iter(f"{SVG}text")]
    assert "offline DPO, pairs +2 mistakes" in texts
