"""The ``prunetune`` command. Every known bad input exits 2 with one clear message."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from orchestrator import commands
from orchestrator.commands import EXIT_BAD_INPUT, EXIT_STOPPED
from orchestrator.noise import quiet
from trials.errors import UserError


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
    p.set_defaults(func=commands.inspect)

    p = command("search", "run a search from a YAML config")
    p.add_argument("config", help="the search's YAML file (examples/quickstart.yaml to start from)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help=SET_HELP)
    p.add_argument("--address", default=None, help="Ray cluster address (default: cluster.address, else Ray here)")
    p.add_argument("--tracking-uri", default=None, help=TRACKING_HELP)
    p.add_argument("--resume", action="store_true", help="continue an interrupted search")
    p.set_defaults(func=commands.search)

    p = command("sync", "write to MLflow what a search saved while MLflow was unreachable")
    p.add_argument("name", help="the search's name (its config's name)")
    p.add_argument("--storage", default="runs", help="the search's storage folder")
    p.add_argument("--tracking-uri", default=None, help=TRACKING_HELP)
    p.set_defaults(func=commands.sync)

    p = command("prune", "prune by one method's allocation (no search), fine-tune, log one MLflow run")
    p.add_argument("config", help="a search's YAML file: model, data, baseline and trial settings")
    p.add_argument(
        "--method", choices=("adapruner", "uniform", "paam", "sensitivity"), required=True, help="the allocation"
    )
    p.add_argument("--macs-target", type=float, default=None, help="fraction of baseline MACs to keep, e.g. 0.5")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help=SET_HELP)
    p.add_argument("--tracking-uri", default=None, help=TRACKING_HELP)
    p.set_defaults(func=commands.prune)

    p = command("pareto", "print the Pareto front of a search, read from MLflow")
    p.add_argument("experiment", help="the search's name (its MLflow experiment)")
    p.add_argument("--tracking-uri", default=None, help=TRACKING_HELP)
    p.add_argument("--format", choices=("table", "json", "csv"), default="table", help="output format")
    p.add_argument("--all", action="store_true", help="every finished trial, not only the front")
    p.add_argument("--plot", default=None, metavar="FILE", help="write a plot: .html (plotly) or .png")
    p.set_defaults(func=commands.pareto)

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
    p.set_defaults(func=commands.promote)

    p = command("export", "export a promoted model: torchscript, onnx or state-dict")
    p.add_argument("model", help="models:/NAME@candidate, models:/NAME/VERSION, runs:/RUN_ID or a promote run id")
    p.add_argument("--format", choices=("torchscript", "onnx", "state-dict"), required=True, help="what to write")
    p.add_argument(
        "--output",
        default=None,
        help="the file to write (default: NAME-VERSION.pt or .onnx here, after the model's URI)",
    )
    p.add_argument("--tracking-uri", default=None, help=TRACKING_HELP)
    p.set_defaults(func=commands.export)

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
    p.set_defaults(func=commands.submit)

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
    p.set_defaults(func=commands.trial)
    return parser


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
