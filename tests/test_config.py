"""One source for every default: the library's dataclasses. The config file, its schema and the command line agree."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

import pytest
import yaml

from traice.cli import parser
from traice.stages.detect import DetectParams
from traice.stages.plan import PlanParams
from traice.stages.segment import SegmentParams
from traice.synth import SynthParams
from traice.training.recipes import TASK_WINDOWS, TrainConfig, training_sources

ROOT = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
SCHEMA = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())


def _plain(value):
    """Tuples as lists, so dataclass defaults compare with YAML values."""
    return list(value) if isinstance(value, tuple) else value


def _schema_defaults(node: dict, path: str = "") -> dict[str, object]:
    """Every ``default`` of an object property in the schema, keyed by its dotted config path."""
    out = {}
    for name, prop in (node.get("properties") or {}).items():
        key = f"{path}{name}"
        if "default" in prop and prop.get("type") != "object":
            out[key] = prop["default"]
        if "properties" in prop:
            out.update(_schema_defaults(prop, key + "."))
    return out


def _config_value(key: str):
    node = CONFIG
    for part in key.split("."):
        node = node[part]
    return node


def test_schema_defaults_are_the_config_file_values():
    defaults = _schema_defaults(SCHEMA)
    assert len(defaults) > 40
    for key, default in defaults.items():
        assert _config_value(key) == default, key


@pytest.mark.parametrize("section, params, renamed", [
    ("detect", DetectParams, {}),
    ("segment", SegmentParams, {}),
    ("plan", PlanParams, {}),
    ("stitch", PlanParams, {"chunk": "stitch_chunk", "chunks_per_job": "stitch_chunks_per_job"}),
])
def test_config_sections_are_the_dataclass_defaults(section, params, renamed):
    fields = {f.name: f.default for f in dataclasses.fields(params)}
    for key, value in CONFIG[section].items():
        assert _plain(fields[renamed.get(key, key)]) == value, f"{section}.{key}"


def test_segment_radius_is_the_plan_margin():
    assert CONFIG["segment"]["radius_um"] == SegmentParams.radius_um == PlanParams.margin_um


def test_demo_sample_is_the_synthetic_default():
    assert CONFIG["samples"]["demo"]["synthetic"] == {
        "seed": SynthParams.seed, "shape": list(SynthParams.shape), "cells": SynthParams.cells}


def test_train_section_is_the_training_defaults():
    sources = {k: v.default for k, v in inspect.signature(training_sources).parameters.items()}
    train = CONFIG["train"]
    for key, value in train.items():
        if key in TASK_WINDOWS:
            cfg = TrainConfig(task=key)
            for k, v in value.items():
                assert _plain(getattr(cfg, k)) == v, f"train.{key}.{k}"
            assert cfg.window == TASK_WINDOWS[key]
        elif key in sources:
            assert sources[key] == value, f"train.{key}"
        else:
            assert getattr(TrainConfig, key) == value, f"train.{key}"


def test_command_line_defaults_are_the_library_defaults():
    sub = next(a for a in parser()._actions if a.dest == "command").choices
    synth = {a.dest: a.default for a in sub["synth"]._actions}
    assert synth["shape"] == list(SynthParams.shape) and synth["cells"] == SynthParams.cells and synth["seed"] == SynthParams.seed
    train = {a.dest: a.default for a in sub["train"]._actions}
    cfg = TrainConfig()
    for dest, field in [("steps", "steps"), ("batch", "batch_size"), ("lr", "lr"), ("size", "size"), ("shift", "shift"),
                        ("eval_every", "eval_every"), ("val_windows", "val_windows"), ("seed", "seed"), ("device", "device")]:
        assert train[dest] == getattr(cfg, field), dest
    assert train["input_step"] == list(cfg.input_step)
    assert train["window"] is None  # the task's window, TASK_WINDOWS
    sources = {k: v.default for k, v in inspect.signature(training_sources).parameters.items()}
    for dest in ("seeds_per_field", "synthetic", "folds", "fold"):
        assert train[dest] == sources[dest], dest
