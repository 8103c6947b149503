"""Submitting a search as a Ray job (cluster.submit): bad input refused before any cluster is contacted."""

from __future__ import annotations

from orchestrator.cli import main


def test_submit_refuses_bad_input_before_contacting_a_cluster(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("name: x\n")
    assert main(["submit", "--address", "http://127.0.0.1:9"]) == 2
    assert "either CONFIG" in capsys.readouterr().err
    assert main(["submit", str(cfg), "--address", "http://127.0.0.1:9"]) == 2  # storage 'runs' is relative
    assert "absolute path every node sees" in capsys.readouterr().err
    assert main(["submit", str(cfg), "--address", "127.0.0.1:9", "--set", "storage=/shared/runs"]) == 2
    assert "dashboard URL" in capsys.readouterr().err
