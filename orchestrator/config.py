"""Search config: one YAML file, validated once into typed objects.

``load_config(path, overrides)`` reads the YAML, applies ``--set dotted.key=value``
overrides and validates. Unknown keys and bad values raise ``UserError`` naming the key;
the inside of prunetune never re-checks a config.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from pydantic import Field, PrivateAttr, ValidationError, model_validator

from orchestrator.overrides import apply_overrides, yaml_problem
from orchestrator.sections import (
    BaselineSection,
    ClusterSection,
    DataSection,
    LatencySection,
    ModelSection,
    SearchSection,
    SensitivitySection,
    TrackingSection,
    TrialSection,
    _Strict,
    carry,
)
from trials.data import DataConfig
from trials.errors import UserError
from trials.latency import LatencySettings, check_runtime

__all__ = ["SearchConfig", "SearchSection", "dump_config", "flat_config", "load_config", "validate_config"]

STORAGE_SCHEMES = ("s3", "gs", "gcs", "hdfs", "abfs", "abfss", "file")  # what pyarrow (so Ray) opens


class SearchConfig(_Strict):
    name: str = Field(..., min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")
    model: ModelSection = ModelSection()
    data: DataSection = DataSection()
    baseline: BaselineSection = BaselineSection()
    search: SearchSection = SearchSection()
    trial: TrialSection = TrialSection()
    sensitivity: SensitivitySection = SensitivitySection()
    latency: LatencySection = LatencySection()
    tracking: TrackingSection = TrackingSection()
    cluster: ClusterSection = ClusterSection()
    # Where Ray Tune's and Ray Train's results go, under storage/name: a local path, a
    # shared filesystem path every node sees, or a URI (s3://, gs://, file://, ...) so that
    # results outlive the head. With a URI, the driver's own files (the trained baseline
    # cache, the MLflow spill file) go under ./runs/name on the driver.
    storage: str = "runs"
    # the dotted keys the user gave (file and --set), when read by load_config; None: unknown,
    # every setting counts as given. A --resume keeps the stored value of any other setting.
    _given: frozenset[str] | None = PrivateAttr(default=None)

    @property
    def given(self) -> frozenset[str] | None:
        return self._given

    @model_validator(mode="after")
    def _methods(self) -> SearchConfig:
        needs_scores = self.trial.criterion == "paam" or "paam" in self.search.warm_start_methods
        if needs_scores and self.baseline.regularizer != "paam" and not self.baseline.path:
            raise ValueError(
                "trial.criterion paam and the paam warm start need learned scores: set baseline.regularizer: paam "
                "(or a baseline.path trained that way)"
            )
        if self.search.objective == "latency":
            if self.latency.device.startswith("cuda") and self.trial.gpu <= 0:
                raise ValueError("latency.device: cuda is measured where trials run: it needs trial.gpu > 0")
            if self.latency.runtime == "onnxruntime":
                check_runtime(LatencySettings(runtime="onnxruntime"))  # the extra, named, before any work
        if self.search.screen is not None and (
            self.trial.evaluation != "finetune" or self.trial.adaptive_bn_batches < 1
        ):
            raise ValueError(
                "search.screen: screens by the adaptive-BN score before a fine-tune: it needs trial.evaluation "
                "finetune and trial.adaptive_bn_batches >= 1"
            )
        return self

    def data_config(self, batch_size: int | None = None) -> DataConfig:
        return carry(self.data, DataConfig, batch_size=batch_size or self.trial.batch_size)

    def storage_uri(self) -> str:
        """Ray Tune's / Ray Train's storage path: a URI, or an absolute local path."""
        if "://" in self.storage:
            return f"{self.storage.rstrip('/')}/{self.name}"
        return str(self.storage_dir())

    def storage_dir(self) -> Path:
        """The driver's local directory for this search (baseline cache, spill file)."""
        root = "runs" if "://" in self.storage else self.storage
        return (Path(root) / self.name).resolve()

    @model_validator(mode="after")
    def _storage(self) -> SearchConfig:
        if "://" in self.storage:  # checked by scheme only: opening an s3:// URI goes to the network
            scheme = self.storage.split("://", 1)[0]
            if scheme not in STORAGE_SCHEMES:
                raise ValueError(
                    f"storage: '{self.storage}' has scheme '{scheme}' is not one of {', '.join(STORAGE_SCHEMES)} "
                    "(or give a shared filesystem path)"
                )
        return self


def _format_error(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
        field = re.match(r"([a-z_.]+): (.*)", msg, re.S)  # a validator's message names its field first
        if err["type"] == "value_error" and field:
            loc, msg = [*loc, field.group(1)], field.group(2)
        lines.append(f"{'.'.join(loc) or 'config'}: {msg}")
    return "invalid config: " + "; ".join(lines)


def validate_config(data: dict) -> SearchConfig:
    try:
        return SearchConfig.model_validate(data)
    except ValidationError as exc:
        raise UserError(_format_error(exc)) from None


def load_config(path: str | Path, overrides: list[str] | None = None) -> SearchConfig:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file '{path}' does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"config file '{path}' is not valid YAML: {yaml_problem(exc)}") from None
    if not isinstance(data, dict):
        raise UserError(f"config file '{path}' must hold a mapping of sections")
    data = apply_overrides(data, overrides or [])
    cfg = validate_config(data)
    cfg._given = frozenset(k for k, v in flat_config(data).items() if v is not None)
    return cfg


def flat_config(d: dict, prefix: str = "") -> dict:
    """A nested config as dotted keys, e.g. {'search.sampler': 'tpe'}."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        out.update(flat_config(v, key + ".") if isinstance(v, dict) else {key: v})
    return out


def dump_config(cfg: SearchConfig) -> str:
    """The resolved config as YAML (logged with the search)."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
