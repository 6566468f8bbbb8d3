"""report.md and curves.png from known metrics/evals/config files (numbers worked out by hand below)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from robot_rl.runners.evaluate import EvalResult
from robot_rl.runners.report import main, write_report


def _eval(
    policy: str,
    where: str,
    update: int,
    returns: Sequence[float],
    lengths: Sequence[int],
    falls: int,
    cap: int = 500,
) -> dict[str, object]:
    return EvalResult.summarise(
        policy=policy,
        where=where,  # type: ignore[arg-type]
        update=update,
        returns=returns,
        lengths=lengths,
        falls=falls,
        max_episode_steps=cap,
        wall_s=12.5,
    ).to_json_dict()


# h2o real: means 10, 20, 30, 40. Final (4000): [35, 45, 40] -> mean 40, std sqrt((25 + 25 + 0) / 3) = 4.08;
# lengths [500, 500, 480] -> 493.3. Score = mean of the last 3 means = (20 + 30 + 40) / 3 = 30.00.
# behaviour: [20, 30, 40, 10] -> mean 25, std sqrt((25 + 25 + 225 + 225) / 4) = 11.18; lengths mean 75.
# sac-sim-only: [15, 25] -> 20 +- 5; lengths [100, 300] -> 200.
EVALS = [
    _eval("behaviour", "real", 0, [20, 30, 40, 10], [60, 70, 80, 90], 4),
    _eval("h2o", "real", 1000, [8, 12], [500, 500], 0),
    _eval("h2o", "sim", 1000, [50, 70], [500, 500], 0),
    _eval("h2o", "real", 2000, [18, 22], [500, 500], 0),
    _eval("h2o", "real", 3000, [30, 30], [500, 500], 0),
    _eval("h2o", "real", 4000, [35, 45, 40], [500, 500, 480], 1),
    _eval("h2o", "sim", 4000, [100, 110], [500, 500], 0),
    _eval("sac-sim-only", "real", 4000, [15, 25], [100, 300], 2),
]
METRICS = [
    {
        "update": u,
        "wall_s": 1234.0 * u / 4000,
        "sim_steps": u,
        "loss/critic": 10.0 / (1 + u),
        "loss/actor": -1.0 - u / 1000,
        "alpha": 0.1,
        "h2o/w_mean": 0.8,
        "h2o/u_mean": 1.5,
    }
    for u in range(0, 4001, 500)
]
CONFIG = {  # as robot_rl.runners.train writes it: no wall time (taken from metrics), threads nested
    "algo": "h2o",
    "sim": "mujoco",
    "sim_profile": "nominal",
    "real_logs": "calib/run1",
    "updates": 4000,
    "seed": 0,
    "resolved": {"torch_threads": 1, "eval_max_episode_steps": 500},
}


def _write_run(
    run: Path,
    evals: Sequence[dict[str, object]] | None = EVALS,
    metrics: Sequence[dict[str, object]] | None = METRICS,
    config: dict[str, object] | None = CONFIG,
) -> Path:
    run.mkdir(parents=True, exist_ok=True)
    if evals is not None:
        (run / "evals.jsonl").write_text("".join(json.dumps(e) + "\n" for e in evals))
    if metrics is not None:
        (run / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics))
    if config is not None:
        (run / "config.json").write_text(json.dumps(config))
    return run


def test_headline_table_has_the_hand_computed_numbers(tmp_path: Path) -> None:
    report = write_report(_write_run(tmp_path / "run"), title="H2O seed 0").read_text()
    assert report.startswith("# H2O seed 0\n")
    assert "| trained | `h2o` | 4000 | 40.00 ± 4.08 | 3 | 1 | 493.3 | 500 |" in report
    assert "| behaviour (real logs) | `behaviour` | - | 25.00 ± 11.18 | 4 | 4 | 75.0 | 500 (logs) |" in report
    assert (
        "| SAC trained only in sim | `sac-sim-only` | 4000 | 20.00 ± 5.00 | 2 | 2 | 200.0 | 500 |" in report
    )
    assert (
        "The trained policy (h2o) beats the behaviour policy and SAC trained only in the simulator: "
        "40.00 vs 25.00 vs 20.00" in report
    )


def test_score_budgets_and_config(tmp_path: Path) -> None:
    report = write_report(_write_run(tmp_path / "run")).read_text()
    assert report.startswith("# Training report: run\n")
    assert "| `h2o` | 30.00 | 20.00 @ 2000, 30.00 @ 3000, 40.00 @ 4000 |" in report
    assert "| `sac-sim-only` | 20.00 (only 1 evaluation(s)) | 20.00 @ 4000 |" in report
    # Budgets: last metrics line; real-robot steps = every real evaluation except the logs:
    # h2o 1000 + 1000 + 1000 + 1480, sac-sim-only 400 -> 4880 over 5 evaluations of 12.5 s.
    assert "| 4000 (config: 4000) | 4000 | 1234 s (0:20:34) | 4880 (5 evaluations, 62 s) | 1 |" in report
    assert "| h2o | mujoco | nominal | calib/run1 | 4000 | 0 | 1234 s (0:20:34) (metrics) | 1 |" in report
    assert '"eval_max_episode_steps": 500' in report  # the whole config is reproduced
    assert "## Missing" not in report
    assert "same 500-step cap as the evaluations" in report


def test_curves_png_written(tmp_path: Path) -> None:
    run = _write_run(tmp_path / "run")
    write_report(run)
    png = (run / "curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(png) > 10_000  # two panels with lines, not an empty canvas


def test_missing_files_are_reported_not_raised(tmp_path: Path) -> None:
    run = tmp_path / "empty"
    run.mkdir()
    report = write_report(run).read_text()
    assert "`metrics.jsonl` is missing" in report
    assert "`evals.jsonl` is missing" in report
    assert "`config.json` is missing" in report
    assert "No real-robot evaluation of a trained policy in evals.jsonl: no comparison is possible." in report
    assert (run / "curves.png").stat().st_size > 0


def test_missing_baseline_is_named(tmp_path: Path) -> None:
    evals = [e for e in EVALS if e["policy"] != "sac-sim-only"]
    report = write_report(_write_run(tmp_path / "run", evals=evals)).read_text()
    assert "| SAC trained only in sim | `sac-sim-only` | - | missing | - | - | - | - |" in report
    assert "SAC sim-only baseline: no `sac-sim-only` real evaluation in evals.jsonl." in report
    assert "The trained policy (h2o) beats the behaviour policy: 40.00 vs 25.00" in report
    assert "the SAC sim-only baseline is missing." in report


def test_does_not_beat_and_cap_note(tmp_path: Path) -> None:
    # The logs recorded with a 1000-step cap, the evaluations at 500; the behaviour policy now scores 50.
    evals = [_eval("behaviour", "real", 0, [45, 55], [900, 1000], 1, cap=1000), *EVALS[1:]]
    report = write_report(_write_run(tmp_path / "run", evals=evals)).read_text()
    assert (
        "The trained policy (h2o) does not beat the behaviour policy and SAC trained only in the simulator: "
        "40.00 vs 50.00 vs 20.00" in report
    )
    assert "It beats SAC sim-only but not the behaviour policy." in report
    assert "capped at 1000 steps, while the evaluations are capped at 500 steps" in report


def test_malformed_lines_name_file_and_line(tmp_path: Path) -> None:
    run = _write_run(tmp_path / "run")
    lines = [json.dumps(e) for e in EVALS]
    lines[2] = lines[2][:-5]  # cut JSON
    (run / "evals.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"evals\.jsonl:3: not JSON"):
        write_report(run)

    bad = dict(EVALS[0])
    del bad["falls"]
    (run / "evals.jsonl").write_text("\n" + json.dumps(bad) + "\n")  # blank line 1 keeps the numbering
    with pytest.raises(ValueError, match=r"evals\.jsonl:2: eval result: missing keys \['falls'\]"):
        write_report(run)

    _write_run(run)
    metrics = [json.dumps(m) for m in METRICS]
    metrics[3] = json.dumps({**METRICS[3], "loss/critic": "nan?"})
    (run / "metrics.jsonl").write_text("\n".join(metrics) + "\n")
    with pytest.raises(ValueError, match=r"metrics\.jsonl:4: 'loss/critic': expected a number"):
        write_report(run)


def test_module_entry_point(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = _write_run(tmp_path / "run")
    assert main([str(run)]) == 0
    assert capsys.readouterr().out.strip() == str(run / "report.md")
    assert main([str(tmp_path / "nope")]) == 2
