"""make-report's RNN-T learning curve (rescoring/report_curve.py), from train-asr's logs."""

from __future__ import annotations

import math

import pytest

from asr.train import AsrTrainer
from common.io import InputError
from common.trainer import MetricsLog
from rescoring.report_curve import curve_md, plot_curve, read_learning_curve

VALID = """step,epoch,lr,dev_loss,dev_greedy_wer,elapsed_s
200,1,0.001,3.5,97.5,120.0
400,1,0.002,2.1,80.25,240.0
600,2,0.002,1.9,81.0,361.2
"""
MONITOR = """step,epoch,set,greedy_wer,elapsed_s
200,1,unseen,99.0,121.0
400,1,unseen,90.5,241.0
600,2,unseen,88.0,362.0
650,2,unseen,87.5,390.0
"""


def _logs(tmp_path, valid=VALID, monitor=MONITOR):
    d = tmp_path / "log"
    d.mkdir()
    (d / "valid.csv").write_text(valid)
    if monitor is not None:
        (d / "monitor.csv").write_text(monitor)
    return d


def test_dev_and_monitor_joined_on_the_step(tmp_path):
    curve = read_learning_curve(_logs(tmp_path))
    assert [p.step for p in curve.points] == [200, 400, 600, 650]
    assert curve.sets == ["dev", "unseen"]
    assert curve.points[1].wer == {"dev": 80.25, "unseen": 90.5}
    assert curve.points[1].minutes == 4.0 and curve.points[1].dev_loss == 2.1
    end = curve.points[3]  # the monitor's epoch-end check: no dev check at that step
    assert end.wer == {"unseen": 87.5} and math.isnan(end.dev_loss) and end.minutes == 6.5
    md = "\n".join(curve_md(curve))
    assert "| step | minutes | dev loss | dev WER | unseen WER |" in md
    assert "| 400 | 4.0 | 2.100 | 80.25 * | 90.50 |" in md  # the best dev check is marked
    assert "| 650 | 6.5 |  |  | 87.50 |" in md
    assert "best dev check: step 400, 80.25" in md
    assert "dev 80.25 -> 81.00 (steps 400 -> 600); unseen 88.00 -> 87.50 (steps 600 -> 650)" in md
    png = plot_curve(curve, tmp_path / "plots")
    assert png.name == "asr-learning-curve.png" and png.stat().st_size > 1000


def test_reads_what_train_asr_writes(tmp_path):
    """The log as train-asr writes it (its writer, its fields): the checks every
    --valid-interval steps have the greedy WER only, the epoch ends the dev loss too."""
    d = tmp_path / "log"
    log = MetricsLog(
        d / "valid.csv", ["step", "epoch", "lr", *AsrTrainer.dev_log_fields, "elapsed_s"]
    )
    log.write(step=200, epoch=1, lr=1.3e-3, dev_greedy_wer=97.72, elapsed_s=212.1)  # after_step
    log.write(step=351, epoch=1, lr=1.8e-3, dev_loss=4.834, dev_greedy_wer=95.6, elapsed_s=413.5)
    log.close()
    curve = read_learning_curve(d)
    assert [p.step for p in curve.points] == [200, 351]
    assert math.isnan(curve.points[0].dev_loss) and curve.points[0].wer == {"dev": 97.72}
    assert curve.points[1].dev_loss == pytest.approx(4.834)
    md = "\n".join(curve_md(curve))
    assert "| 200 | 3.5 |  | 97.72 |" in md and "| 351 | 6.9 | 4.834 | 95.60 * |" in md


def test_without_monitor_sets(tmp_path):
    curve = read_learning_curve(_logs(tmp_path, monitor=None))
    assert curve.sets == ["dev"] and len(curve.points) == 3
    assert "monitor.csv" not in "\n".join(curve_md(curve))


@pytest.mark.parametrize(
    "valid, monitor, match",
    [
        (None, None, r"valid.csv: no such file"),
        ("step,epoch,lr,dev_loss,dev_greedy_wer,elapsed_s\n", None, "no dev check logged yet"),
        ("step,epoch,lr,dev_loss,elapsed_s\n1,1,0.1,2.0,3.0\n", None, "no column dev_greedy_wer"),
        (VALID.replace("80.25", "x"), None, r"valid.csv:3: dev_greedy_wer 'x' is not a number"),
        (VALID.replace("80.25", "nan"), None, r"valid.csv:3: dev_greedy_wer is nan"),
        (VALID.replace("2.1", "x"), None, r"valid.csv:3: dev_loss 'x' is not a number"),
        (VALID, MONITOR.replace("400,1,unseen", "400,1,"), r"monitor.csv:3: set name ''"),
        (VALID, MONITOR.replace("90.5", ""), r"monitor.csv:3: greedy_wer '' is not a number"),
    ],
)
def test_bad_logs_name_file_and_line(tmp_path, valid, monitor, match):
    d = tmp_path / "log"
    d.mkdir()
    if valid is not None:
        (d / "valid.csv").write_text(valid)
    if monitor is not None:
        (d / "monitor.csv").write_text(monitor)
    with pytest.raises(InputError, match=match):
        read_learning_curve(d)


def test_make_report_adds_the_curve_and_fails_before_writing(tiny, tmp_path, capsys):
    from rescoring import report
    from tests.rescoring.test_output_sets import _rescore, _score

    rd = tiny / "rescore"
    _rescore(tiny, rd / "rnnt_1best")
    _score(tiny, rd / "rnnt_1best", system="rnnt_1best")
    matrix = tiny / "systems.toml"
    matrix.write_text(
        'headline = "rnnt_1best"\nfirst_pass = "rnnt_1best"\noracle = "oracle"\n'
        '[systems.rnnt_1best]\nlabel = "1-best"\n'
        '[systems.oracle]\nlabel = "oracle"\nselect = "oracle"\n'
    )
    out = tmp_path / "out" / "R.md"
    out.parent.mkdir()
    argv = ["--systems", str(matrix), "--rescore-dir", str(rd), "--out", str(out)]
    report.main([*argv, "--asr-log-dir", str(_logs(tmp_path))])
    md = out.read_text()
    assert "## RNN-T learning curve" in md and "![asr-learning-curve]" in md
    assert (out.parent / "plots/asr-learning-curve.png").is_file()
    before = out.read_bytes()
    with pytest.raises(SystemExit):
        report.main([*argv, "--asr-log-dir", str(tmp_path / "nowhere")])
    assert "nowhere/valid.csv: no such file" in capsys.readouterr().err
    assert out.read_bytes() == before  # nothing rewritten
