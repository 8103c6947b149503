"""What each ``prunetune`` command does, once its arguments are parsed (the parser is in
``cli``). Each imports what it needs inside, so a light command loads no Ray Tune,
plotly or matplotlib; a ``UserError`` becomes one line and exit 2 in ``cli.main``."""

from __future__ import annotations

import argparse
import json
import sys

from trials.errors import UserError

EXIT_BAD_INPUT = 2  # a bad config, argument, checkpoint or address: nothing was run
EXIT_OUTAGE = 3  # MLflow unreachable at the end of a search: results saved, `prunetune sync` writes them
EXIT_STOPPED = 130  # stopped by Ctrl-C (128 + SIGINT), state saved for --resume


def inspect(args: argparse.Namespace) -> int:
    from trials.cost import count_cost
    from trials.groups import build_graph
    from trials.models import create_model, default_input_size

    side = args.input_size or default_input_size(args.arch)
    model = create_model(args.arch, num_classes=args.num_classes, in_channels=args.in_channels)
    shape = (args.in_channels, side, side)
    cost = count_cost(model, shape)
    graph = build_graph(model, shape, args.arch)
    if args.format == "json":
        out = {
            "arch": args.arch,
            "input_shape": list(shape),
            "macs": cost.macs,
            "params": cost.params,
            "groups": [
                {
                    "name": g.name,
                    "channels": g.channels,
                    "stage": g.stage,
                    "members": list(g.members),
                    "consumers": list(g.consumers),
                }
                for g in graph.groups
            ],
        }
        print(json.dumps(out, indent=2))
        return 0
    print(f"{args.arch}  input {shape}  MACs {cost.macs / 1e6:.2f} M  params {cost.params / 1e6:.3f} M")
    print(f"{len(graph.groups)} channel groups (a search varies the kept count of each):\n")
    width = max(len(g.name) for g in graph.groups)
    print(f"{'group':<{width}}  {'channels':>8}  {'stage':>5}  members")
    for g in graph.groups:
        members = ", ".join(g.members)
        print(f"{g.name:<{width}}  {g.channels:>8}  {g.stage:>5}  {members}")
    return 0


def trial(args: argparse.Namespace) -> int:
    """Train (or load) a baseline, run one trial at a uniform keep ratio, print metrics."""
    from trials.baseline import ModelInfo, save_checkpoint, train_baseline
    from trials.data import DataConfig
    from trials.train import FinetuneConfig
    from trials.trial import TrialConfig, resolve_device, run_trial

    data = DataConfig(name=args.data, root=args.data_root)
    baseline = args.baseline
    if baseline is None:
        from trials.data import load_train_val

        splits = load_train_val(data)
        info = ModelInfo(args.arch, splits.num_classes, splits.in_channels, splits.image_size)
        print(f"training a {args.arch} baseline on {args.data} for {args.baseline_epochs} epochs ...")
        model, metrics = train_baseline(
            info, data, FinetuneConfig(epochs=args.baseline_epochs, lr=0.1), resolve_device(args.device)
        )
        baseline = str(save_checkpoint(args.out, model, info, metrics=metrics))
        print(f"baseline val_accuracy {metrics['val_accuracy']:.4f}, saved to {baseline}")
    cfg = TrialConfig(
        arch=args.arch,
        baseline=baseline,
        data=data,
        keep=args.keep,
        criterion=args.criterion,
        adaptive_bn_batches=args.adaptive_bn,
        device=args.device,
        finetune=FinetuneConfig(epochs=args.epochs, lr=args.lr),
    )
    result = run_trial(cfg, report=lambda m: print(f"  epoch {m['epoch']}: val_accuracy {m['val_accuracy']:.4f}"))
    result.pop("state_dict")
    print(json.dumps({k: v for k, v in result.items() if k != "spec"}, indent=2))
    return 0


def search(args: argparse.Namespace) -> int:
    from orchestrator.config import load_config
    from orchestrator.progress import format_rows

    overrides = list(args.set or [])
    if args.address:
        overrides.append(f"cluster.address={args.address}")
    if args.tracking_uri:
        overrides.append(f"tracking.uri={args.tracking_uri}")
    cfg = load_config(args.config, overrides)
    from orchestrator.search import SearchStopped, TrackingOutage, run_search

    try:
        rows = run_search(cfg, resume=args.resume)
    except (SearchStopped, KeyboardInterrupt):
        print(f"\nstopped. Go on with: prunetune search {args.config} --resume", file=sys.stderr)
        return EXIT_STOPPED
    except TrackingOutage as exc:
        print(f"prunetune: tracking outage: {exc}", file=sys.stderr)
        return EXIT_OUTAGE
    front = [r for r in rows if r["pareto"]]
    done = sum(not r.get("baseline") for r in rows)
    points = f"{len(front)} point{'s' * (len(front) != 1)}"
    print(f"\nPareto front of '{cfg.name}' ({points}, from {done} finished trials and the baseline):")
    print(format_rows(front))
    from orchestrator.store import resolve_uri

    print(f"\nSee it in the MLflow UI: mlflow ui --backend-store-uri {resolve_uri(cfg.tracking.uri)}")
    return 0


def sync(args: argparse.Namespace) -> int:
    """Write what a search saved while MLflow was unreachable."""
    from orchestrator.sync import sync

    sync(args.name, args.storage, args.tracking_uri)
    return 0


def prune(args: argparse.Namespace) -> int:
    from orchestrator.config import load_config

    overrides = list(args.set or [])
    if args.tracking_uri:
        overrides.append(f"tracking.uri={args.tracking_uri}")
    cfg = load_config(args.config, overrides)
    from orchestrator.oneshot import run_prune

    result = run_prune(cfg, args.method, args.macs_target)
    print(json.dumps(result, indent=2, default=str))
    return 0


def pareto(args: argparse.Namespace) -> int:
    from orchestrator.axis import axis
    from orchestrator.front_table import rows_to_csv
    from orchestrator.progress import format_rows
    from orchestrator.readback import read_search

    rows, baseline, objective = read_search(args.tracking_uri, args.experiment, say=lambda t: print(t, file=sys.stderr))
    front = rows if args.all else [r for r in rows if r["pareto"]]
    if args.format == "json":
        print(json.dumps({"objective": objective, "baseline": baseline, "trials": front}, indent=2))
    elif args.format == "csv":
        print(rows_to_csv(front), end="")
    else:
        print(format_rows(front))
    if args.plot:
        from pathlib import Path

        from orchestrator.plots import write_html, write_png

        plot = Path(args.plot)
        plot.parent.mkdir(parents=True, exist_ok=True)
        title = f"{args.experiment}: {axis(objective).label} against val accuracy"
        if plot.suffix == ".html":
            from orchestrator.store import client_for, get_experiment
            from orchestrator.tracking import search_runs_of
            from orchestrator.widths import front_widths

            client = client_for(args.tracking_uri)
            parent = search_runs_of(client, get_experiment(client, args.experiment).experiment_id)[0]
            write_html(rows, plot, title, baseline, objective, front_widths(client, parent.info.run_id, rows))
        else:
            write_png(rows, plot, title, baseline, objective)
        print(f"plot written to {plot.resolve()}", file=sys.stderr)
    return 0


def promote(args: argparse.Namespace) -> int:
    from cluster.connect import connect
    from orchestrator.promote import PromoteOptions, promote

    if args.epochs < 1 or args.workers < 1:
        raise UserError("--epochs and --workers must be at least 1")
    for flag, value in (("--max-macs-ratio", args.max_macs_ratio), ("--max-latency-ratio", args.max_latency_ratio)):
        if value is not None and not 0 < value <= 1:
            raise UserError(f"{flag} must be in (0, 1], got {value}")
    opts = PromoteOptions(
        epochs=args.epochs,
        workers=args.workers,
        lr=args.lr,
        batch_size=args.batch_size,
        register_as=args.register_as,
        max_macs_ratio=args.max_macs_ratio,
        max_latency_ratio=args.max_latency_ratio,
    )
    from orchestrator.promote import resolve_trial_run
    from orchestrator.store import client_for

    resolve_trial_run(client_for(args.tracking_uri), args.target, args.max_macs_ratio, args.max_latency_ratio)
    connect(args.address)
    result = promote(args.target, opts, args.tracking_uri)
    print(json.dumps(result, indent=2))
    return 0


def export(args: argparse.Namespace) -> int:
    from orchestrator.export import export

    ext = {"torchscript": "pt", "onnx": "onnx", "state-dict": "pt"}[args.format]
    suffix = "-state-dict" if args.format == "state-dict" else ""
    output = args.output or f"{args.model.split('/')[-1].replace('@', '-')}{suffix}.{ext}"
    path = export(args.model, args.format, output, args.tracking_uri)
    print(f"exported {args.model} as {args.format} to {path}")
    return 0


def submit(args: argparse.Namespace) -> int:
    from cluster.submit import submit_promote, submit_search

    follow = not args.no_follow
    if (args.config is None) == (args.promote is None):
        raise UserError("submit needs either CONFIG (a search) or --promote TARGET (a promotion)")
    if args.config is not None:
        from pathlib import Path

        from orchestrator.config import dump_config, load_config

        cfg = load_config(args.config, list(args.set or []))  # validated here: a bad config never reaches the cluster
        if not Path(cfg.storage).is_absolute() and "://" not in cfg.storage:
            raise UserError(
                f"storage '{cfg.storage}': a submitted search needs an absolute path every node sees "
                "(a shared filesystem), e.g. --set storage=/shared/runs"
            )
        _, status = submit_search(dump_config(cfg), args.address, args.tracking_uri, follow)
    else:
        extra = [args.promote, "--epochs", str(args.epochs), "--workers", str(args.workers)]
        extra += ["--tracking-uri", args.tracking_uri] if args.tracking_uri else []
        extra += ["--register-as", args.register_as] if args.register_as else []
        extra += ["--max-macs-ratio", str(args.max_macs_ratio)] if args.max_macs_ratio is not None else []
        extra += ["--max-latency-ratio", str(args.max_latency_ratio)] if args.max_latency_ratio is not None else []
        _, status = submit_promote(extra, args.address, follow)
    return 0 if status in ("SUCCEEDED", "PENDING") else 1
