"""The command handlers (orchestrator.commands) behind the CLI: pareto read back from MLflow, tracking URIs that do not answer."""

from __future__ import annotations

import json

from orchestrator.cli import main


def test_an_unreachable_or_mistyped_tracking_uri_is_one_line(tmp_path, capsys, monkeypatch):
    from cluster.local import free_port

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    cfg = tmp_path / "s.yaml"
    cfg.write_text("name: q\n")
    down = f"http://127.0.0.1:{free_port()}"
    for argv in (
        ["pareto", "q", "--tracking-uri", down],
        ["pareto", "q", "--tracking-uri", "htp://nowhere"],
        ["search", str(cfg), "--resume", "--tracking-uri", down],
        ["search", str(cfg), "--tracking-uri", down],
    ):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, (argv, err)
        assert ("cannot be reached" in err or "cannot be read" in err) and argv[-1] in err, (argv, err)
    assert not (tmp_path / "runs").exists()


def test_pareto_honours_the_environment_and_plots_into_a_new_folder(tmp_path, capsys, monkeypatch):
    from orchestrator.tracking import SearchRecord

    uri = f"sqlite:///{tmp_path}/elsewhere.db"
    record = SearchRecord.open(uri, "q", str(tmp_path / "runs"), resume=False)
    record.log_baseline({"val_accuracy": 0.9, "macs": 1e8})
    spec = json.dumps({"channels": {"g": 4}})
    # t3: the unpruned network fine-tuned, below the baseline: the baseline's point beats it
    for i, (acc, macs) in enumerate([(0.8, 2e7), (0.85, 5e7), (0.7, 6e7), (0.88, 1e8)]):
        result = {"val_accuracy": acc, "macs": macs, "macs_ratio": macs / 1e8, "params": 9, "spec_json": spec}
        record.log_final(f"t{i}", {"stage0": 0.5}, result)
    assert record.client.get_run(record.children["t3"]).data.tags["prunetune.pareto"] == "false"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    plot = tmp_path / "new" / "deeper" / "front.png"
    assert main(["pareto", "q", "--format", "json", "--plot", str(plot)]) == 0
    captured = capsys.readouterr()
    assert {t["trial"] for t in json.loads(captured.out)["trials"]} == {"t0", "t1", "baseline"}
    assert plot.is_file() and str(plot) in captured.err
    assert not (tmp_path / "mlflow.db").exists()  # MLFLOW_TRACKING_URI, not the default store
