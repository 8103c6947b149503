"""The ``prunetune`` command. Every known bad input exits 2 with one clear message."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable

from trials.errors import UserError

EXIT_BAD_INPUT = 2  # a bad config, argument, checkpoint or address: nothing was run
EXIT_OUTAGE = 3  # MLflow unreachable at the end of a search: results saved, `prunetune sync` writes them
EXIT_STOPPED = 130  # stopped by Ctrl-C (128 + SIGINT), state saved for --resume


def _inspect(args: argparse.Namespace) -> int:
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


def _trial(args: argparse.Namespace) -> int:
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


def _search(args: argparse.Namespace) -> int:
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
    print(f"\nPareto front of '{cfg.name}' ({len(front)} of {done} finished trials and the baseline):")
    print(format_rows(front))
    from orchestrator.tracking import resolve_uri

    print(f"\nSee it in the MLflow UI: mlflow ui --backend-store-uri {resolve_uri(cfg.tracking.uri)}")
    return 0


def _sync(args: argparse.Namespace) -> int:
    """Write what a search saved while MLflow was unreachable."""
    from orchestrator.search import sync

    sync(args.name, args.storage, args.tracking_uri)
    return 0


def _prune(args: argparse.Namespace) -> int:
    from orchestrator.config import load_config

    overrides = list(args.set or [])
    if args.tracking_uri:
        overrides.append(f"tracking.uri={args.tracking_uri}")
    cfg = load_config(args.config, overrides)
    from orchestrator.oneshot import run_prune

    result = run_prune(cfg, args.method, args.macs_target)
    print(json.dumps(result, indent=2, default=str))
    return 0


def _pareto(args: argparse.Namespace) -> int:
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
            from orchestrator.tracking import client_for, get_experiment, search_runs_of
            from orchestrator.widths import front_widths

            client = client_for(args.tracking_uri)
            parent = search_runs_of(client, get_experiment(client, args.experiment).experiment_id)[0]
            write_html(rows, plot, title, baseline, objective, front_widths(client, parent.info.run_id, rows))
        else:
            write_png(rows, plot, title, baseline, objective)
        print(f"plot written to {plot.resolve()}", file=sys.stderr)
    return 0


def _promote(args: argparse.Namespace) -> int:
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
    from orchestrator.tracking import client_for

    resolve_trial_run(client_for(args.tracking_uri), args.target, args.max_macs_ratio, args.max_latency_ratio)
    connect(args.address)
    result = promote(args.target, opts, args.tracking_uri)
    print(json.dumps(result, indent=2))
    return 0


def _export(args: argparse.Namespace) -> int:
    from orchestrator.export import export

    ext = {"torchscript": "pt", "onnx": "onnx", "state-dict": "pt"}[args.format]
    suffix = "-state-dict" if args.format == "state-dict" else ""
    output = args.output or f"{args.model.split('/')[-1].replace('@', '-')}{suffix}.{ext}"
    path = export(args.model, args.format, output, args.tracking_uri)
    print(f"exported {args.model} as {args.format} to {path}")
    return 0


def _submit(args: argparse.Namespace) -> int:
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


class _Help(argparse.HelpFormatter):
    """Every argument's help ends with its default, unless the help names it already."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default in (None, False, argparse.SUPPRESS) or action.required:
            return text
        return f"{text} (default: {action.default})"


TRACKING_HELP = "MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db here)"
SET_HELP = "override a config key by dotted path, e.g. search.num_trials=32 (repeatable)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="prunetune", description="Search per-layer filter counts of a trained CNN.", formatter_class=_Help
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help, formatter_class=_Help)
        p.add_argument("--verbose", action="store_true", help="show the libraries' INFO lines (MLflow, Optuna, Ray)")
        return p

    p = command("inspect", "list the channel groups a search will vary")
    p.add_argument("arch", help="a registry name (resnet20, resnet56, mobilenet_v2, torchvision names, ...)")
    p.add_argument("--num-classes", type=int, default=10, help="classes of the model's head")
    p.add_argument("--in-channels", type=int, default=3, help="input channels")
    p.add_argument("--input-size", type=int, default=None, help="input side in pixels (default: the model's own)")
    p.add_argument("--format", choices=("table", "json"), default="table", help="output format")
    p.set_defaults(func=_inspect)

    p = command("search", "run a search from a YAML config")
    p.add_argument("config", help="the search's YAML file (examples/quickstart.yaml to start from)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help=SET_HELP)
    p.add_argument("--address", default=None, help="Ray cluster address (default: cluster.address, else Ray here)")
    p.add_argument("--tracking-uri", default=None, help=TRACKING_HELP)
    p.add_argument("--resume", action="store_true", help="continue an interrupted search")
    p.set_defaults(func=_search)

    p = command("sync", "write to MLflow what a search saved while MLflow was unreachable")
    p.add_argument("name", help="the search's name (its config's name)")
    p.add_argument("--storage", default="runs", help="the search's storage folder")
    p.add_argument("--tracking-uri", default=None, help=TRACKING_HELP)
    p.set_defaults(func=_sync)

    p = command("prune", "prune by one method's allocation (no search), fine-tune, log one MLflow run")
    p.add_argument("config", help="a search's YAML file: model, data, baseline and trial settings")
    p.add_argument(
        "--method", choices=("adapruner", "uniform", "paam", "sensitivity"), required=True, help="the allocation"
    )
    p.add_argument("--macs-target", type=float, default=None, help="fraction of baseline MACs to keep, e.g. 0.5")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help=SET_HELP)
    p.add_argument("--tracking-uri", default=None, help=TRACKING_HELP)
    p.set_defaults(func=_prune)

    p = command("pareto", "print the Pareto front of a search, read from MLflow")
    p.add_argument("experiment", help="the search's name (its MLflow experiment)")
    p.add_argument("--tracking-uri", default=None, help=TRACKING_HELP)
    p.add_argument("--format", choices=("table", "json", "csv"), default="table", help="output format")
    p.add_argument("--all", action="store_true", help="every finished trial, not only the front")
    p.add_argument("--plot", default=None, metavar="FILE", help="write a plot: .html (plotly) or .png")
    p.set_defaults(func=_pareto)

    p = command("promote", "fully fine-tune one trial's configuration and register it")
    p.add_argument("target", help="a trial's MLflow run id, or an experiment name with --max-macs-ratio")
    p.add_argument(
        "--max-macs-ratio",
        type=float,
        default=None,
        help="promote the front point with the best val accuracy at or under this MACs ratio",
    )
    p.add_argument(
        "--max-latency-ratio",
        type=float,
        default=None,
        help="a latency search: the front point with the best val accuracy at or under this measured latency ratio",
    )
    p.add_argument("--epochs", type=int, default=30, help="fine-tuning epochs")
    p.add_argument("--workers", type=int, default=2, help="Ray Train workers (DDP; a GPU each where there are GPUs)")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: the search's trial lr)")
    p.add_argument("--batch-size", type=int, default=None, help="per worker (default: the search's)")
    p.add_argument("--register-as", default=None, help="register in MLflow under this name, alias 'candidate'")
    p.add_argument("--address", default=None, help="Ray cluster address (default: start Ray here)")
    p.add_argument("--tracking-uri", default=None, help=TRACKING_HELP)
    p.set_defaults(func=_promote)

    p = command("export", "export a promoted model: torchscript, onnx or state-dict")
    p.add_argument("model", help="models:/NAME@candidate, models:/NAME/VERSION, runs:/RUN_ID or a promote run id")
    p.add_argument("--format", choices=("torchscript", "onnx", "state-dict"), required=True, help="what to write")
    p.add_argument(
        "--output",
        default=None,
        help="the file to write (default: NAME-VERSION.pt or .onnx here, after the model's URI)",
    )
    p.add_argument("--tracking-uri", default=None, help=TRACKING_HELP)
    p.set_defaults(func=_export)

    p = command("submit", "submit a search (CONFIG) or a promotion (--promote) to a Ray cluster as a job")
    p.add_argument("config", nargs="?", default=None, help="the search's YAML file (not with --promote)")
    p.add_argument("--address", required=True, help="the head's dashboard URL, e.g. http://HEAD:8265")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help=SET_HELP)
    p.add_argument("--tracking-uri", default=None, help=TRACKING_HELP)
    p.add_argument("--promote", default=None, metavar="TARGET", help="a trial run id, or an experiment")
    p.add_argument("--max-macs-ratio", type=float, default=None, help="with --promote EXPERIMENT: as promote's")
    p.add_argument("--max-latency-ratio", type=float, default=None, help="with --promote EXPERIMENT: as promote's")
    p.add_argument("--epochs", type=int, default=30, help="with --promote: fine-tuning epochs")
    p.add_argument("--workers", type=int, default=2, help="with --promote: Ray Train workers")
    p.add_argument("--register-as", default=None, help="with --promote: the registered model's name")
    p.add_argument("--no-follow", action="store_true", help="print the job id and return")
    p.set_defaults(func=_submit)

    p = command("trial", "run one trial: prune a baseline to a uniform keep ratio, fine-tune, measure")
    p.add_argument("--arch", default="resnet20", help="a registry name")
    p.add_argument(
        "--data", default="digits", help="dataset name: digits, fashion_mnist, mnist, cifar10, imagefolder, ..."
    )
    p.add_argument("--data-root", default=None, help="where the dataset lives (default: the dataset's own)")
    p.add_argument("--baseline", default=None, help="checkpoint path (default: train one first)")
    p.add_argument("--baseline-epochs", type=float, default=15, help="epochs of the baseline trained first")
    p.add_argument("--out", default="runs/baseline.pt", help="where a trained baseline is saved")
    p.add_argument("--keep", type=float, default=0.7, help="the keep ratio of every channel group")
    p.add_argument("--criterion", default="l1", help="which filters go: l1, l2, bn_scale, taylor, random, ...")
    p.add_argument("--adaptive-bn", type=int, default=10, help="BN recalibration batches (0: off)")
    p.add_argument("--epochs", type=float, default=2, help="fine-tuning epochs")
    p.add_argument("--lr", type=float, default=0.02, help="fine-tuning learning rate")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.set_defaults(func=_trial)
    return parser


NOISY = ("mlflow", "alembic", "optuna", "ray", "ray.tune", "ray.train")  # their INFO lines at start-up


def quiet(verbose: bool) -> None:
    """Start-up noise (MLflow's database messages, Optuna's "a new study", Ray's INFO lines)
    held back to warnings unless ``--verbose``; environment variables reach subprocesses."""
    os.environ["PRUNETUNE_QUIET"] = "0" if verbose else "1"  # Optuna resets its level on import: see search
    if verbose:
        return
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # read when mlflow configures its logger
    for name in NOISY:
        logging.getLogger(name).setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # An unreachable tracking server is told in seconds, not after MLflow's minutes of retries.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # a "View run" line per trial run
    args = build_parser().parse_args(argv)
    quiet(getattr(args, "verbose", False))
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except UserError as exc:
        print(f"prunetune: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("\nprunetune: stopped", file=sys.stderr)
        return EXIT_STOPPED


if __name__ == "__main__":
    sys.exit(main())
