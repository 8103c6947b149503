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


def test_a_model_prunetune_cannot_cut_is_refused_before_any_data_or_baseline(tmp_path, capsys, monkeypatch):
    import time

    monkeypatch.chdir(tmp_path)
    cfg = tmp_path / "s.yaml"
    for arch, says in (("torchvision/shufflenet_v2_x1_0", "cannot be channel-pruned"), ("resnet21", "unknown")):
        cfg.write_text(f"name: m\nmodel: {{arch: '{arch}'}}\n")
        t0 = time.perf_counter()
        assert main(["search", str(cfg)]) == 2
        err = capsys.readouterr().err
        assert says in err and arch in err and "Traceback" not in err
        assert time.perf_counter() - t0 < 20  # refused at once: no baseline was trained
    assert not (tmp_path / "runs").exists() and not (tmp_path / "mlflow.db").exists()


def test_every_cli_argument_has_help_and_its_default_is_shown():
    import argparse

    from orchestrator.cli import build_parser

    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in subparsers.choices.items():
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help, f"prunetune {name} {action.dest}: no help text"
    promote = subparsers.choices["promote"].format_help()
    assert "fine-tuning epochs (default: 30)" in promote
    assert "(default: the search's trial lr)" in promote  # a default said in words is not repeated
    assert "(default: None)" not in "".join(s.format_help() for s in subparsers.choices.values())
