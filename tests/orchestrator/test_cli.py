from __future__ import annotations

import json

from orchestrator.cli import main


def test_inspect_lists_groups_with_macs(capsys):
    assert main(["inspect", "resnet56", "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["groups"]) == 30 and abs(out["macs"] - 126e6) / 126e6 < 0.02
    assert out["groups"][0]["name"] == "conv1" and "layer1.8.conv2" in out["groups"][0]["members"]


def test_inspect_table(capsys):
    assert main(["inspect", "resnet20", "--in-channels", "1"]) == 0
    out = capsys.readouterr().out
    assert "12 channel groups" in out and "layer3.2.conv1" in out


def test_bad_input_exits_2_with_a_message(capsys):
    assert main(["inspect", "resnet21"]) == 2
    err = capsys.readouterr().err
    assert "model 'resnet21' is unknown" in err and "Traceback" not in err


def test_submit_refuses_bad_input_before_contacting_a_cluster(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("name: x\n")
    assert main(["submit", "--address", "http://127.0.0.1:9"]) == 2
    assert "either CONFIG" in capsys.readouterr().err
    assert main(["submit", str(cfg), "--address", "http://127.0.0.1:9"]) == 2  # storage 'runs' is relative
    assert "absolute path every node sees" in capsys.readouterr().err
    assert main(["submit", str(cfg), "--address", "127.0.0.1:9", "--set", "storage=/shared/runs"]) == 2
    assert "dashboard URL" in capsys.readouterr().err
