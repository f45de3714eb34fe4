"""The meta-training display in a log (not a terminal): a line per validation, and a heartbeat."""

from __future__ import annotations

from l2lgd.progress import MetaTrainingDisplay


def _records() -> list[dict]:
    """Three meta-iterations; the second one validates."""
    base = {"meta_loss": 1.5, "best_validation_loss": 0.9, "eta_s": 12.0}
    return [
        {**base, "iteration": 1},
        {**base, "iteration": 2, "validation_loss": 0.9},
        {**base, "iteration": 3},
    ]


def _logged_lines(log_interval_s: float, capsys) -> list[str]:
    with MetaTrainingDisplay(3, log_interval_s=log_interval_s) as display:
        for record in _records():
            display.update(record)
    return [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def test_a_log_gets_one_line_per_validation_between_heartbeats(capsys) -> None:
    lines = _logged_lines(log_interval_s=3600.0, capsys=capsys)
    assert len(lines) == 1
    assert lines[0].startswith("iteration 2/3") and "validation 0.9" in lines[0]


def test_a_log_gets_a_heartbeat_line_once_the_interval_has_passed(capsys) -> None:
    lines = _logged_lines(log_interval_s=0.0, capsys=capsys)
    assert [line.split()[1] for line in lines] == ["1/3", "2/3", "3/3"]
    assert all("ETA 12s" in line for line in lines)


def test_a_heartbeat_before_the_first_validation_shows_no_validation_loss(capsys) -> None:
    first = _logged_lines(log_interval_s=0.0, capsys=capsys)[0]
    assert "validation -" in first and "nan" not in first
