"""One source for every default: the library's dataclasses. The config file, its schema and the command line agree."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

import numpy as np
import pytest
import yaml

from traice.cli import parser
from traice.config import check_config, check_inputs, check_schema, with_defaults
from traice.core.errors import InputError
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
    ("stitch", PlanParams, {"chunk": "stitch_chunk", "chunks_per_job": "stitch_chunks_per_job", "max_jobs": "stitch_max_jobs"}),
])
def test_config_sections_are_the_dataclass_defaults(section, params, renamed):
    fields = {f.name: f.default for f in dataclasses.fields(params)}
    for key, value in CONFIG[section].items():
        assert _plain(fields[renamed.get(key, key)]) == value, f"{section}.{key}"


def test_finetune_section_is_the_finetuning_defaults():
    from traice.training.finetune import FinetuneConfig

    fields = {f.name: f.default for f in dataclasses.fields(FinetuneConfig)}
    inputs = {"image", "points", "complete_box", "traces", "channel"}   # the rule's inputs, not settings
    assert set(CONFIG["finetune"]) - inputs <= set(fields)
    for key in set(CONFIG["finetune"]) - inputs:
        assert _plain(fields[key]) == CONFIG["finetune"][key], f"finetune.{key}"


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
            assert _plain(sources[key]) == value, f"train.{key}"
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


DEMO = {"demo": {"synthetic": {"seed": 0}}}
BOX = {"start_um": [0, 0, 0], "stop_um": [10, 40, 40]}


def _merged(user: dict) -> dict:
    """The default config under ``user``'s, as the workflow merges a --configfile (common.smk)."""
    return with_defaults(CONFIG, user)


def _check(config: dict) -> None:
    check_schema(config, SCHEMA)
    check_config(config)
    check_inputs(config["samples"], config["channel"], config["roi"], config["results"], config["regions"])


@pytest.mark.parametrize("config, message", [
    ({"samples": {}}, "samples: {} should be non-empty"),
    ({"samples": {"bad name!": "x.ome.zarr"}}, "samples: 'bad name!' does not match"),
    ({"samples": DEMO, "detect": {"soma_radius_um": [6, 3]}}, "detect.soma_radius_um [6, 3]: expected [smallest, largest]"),
    ({"samples": DEMO, "detect": {"soma_radius_um": [0, 3]}}, "detect.soma_radius_um.0: 0 is less than or equal to the minimum of 0"),
    ({"samples": DEMO, "detect": {"soma_radius_um": [3, 3]}}, None),
    ({"samples": DEMO, "detect": {"threshold": -1}}, "detect.threshold: -1 is less than or equal to the minimum of 0"),
    ({"samples": DEMO, "detect": {"probability": 1.5}}, "detect.probability: 1.5 is greater than or equal to the maximum"),
    ({"samples": DEMO, "detect": {"method": "cellpose"}}, "detect.method: 'cellpose' is not one of"),
    ({"samples": DEMO, "detect": {"overlap": [0, 0.25, 0.25]}}, None),
    ({"samples": DEMO, "detect": {"overlap": [0, 1.25, 0.25]}}, "detect.overlap.1: 1.25 is greater than or equal to the maximum of 1"),
    ({"samples": DEMO, "detect": {"overlap": [0.25, 0.25]}}, "detect.overlap: [0.25, 0.25] is too short"),
    ({"samples": DEMO, "detect": {"mirror": "yx"}}, None),
    ({"samples": DEMO, "detect": {"mirror": "xyz"}}, None),
    ({"samples": DEMO, "detect": {"mirror": "xw"}}, "detect.mirror: 'xw' does not match"),
    ({"samples": DEMO, "detect": {"mirror": "yxy"}}, "detect.mirror 'yxy' names an axis twice"),
    ({"samples": DEMO, "segment": {"method": "watershed"}}, "segment.method: 'watershed' is not one of"),
    ({"samples": DEMO, "plan": {"tile_shape": [64, 512]}}, "plan.tile_shape: [64, 512] is too short"),
    ({"samples": DEMO, "plan": {"tiles_per_job": 0}}, "plan.tiles_per_job: 0 is less than the minimum of 1"),
    ({"samples": DEMO, "stitch": {"chunk": [0, 256, 256]}}, "stitch.chunk.0: 0 is less than the minimum of 1"),
    ({"samples": DEMO, "roi": {"start_um": [0, 50, 0], "stop_um": [10, 40, 40]}}, "roi 'roi': start_um [0, 50, 0] must lie below"),
    ({"samples": DEMO, "roi": {"a": BOX, "b": {"start_um": [5, 0, 0], "stop_um": [5, 9, 9]}}}, "roi 'b': start_um"),
    ({"samples": DEMO, "roi": {"start_um": [0, 0], "stop_um": [1, 1]}}, "roi"),
    ({"samples": DEMO, "regions": {"l23": {"start_um": [0, 0, 9], "stop_um": [10, 40, 1]}}}, "regions 'l23': start_um"),
    ({"samples": DEMO, "channel": -1}, "channel"),
    ({"samples": DEMO, "results": 3}, "results: 3 is not of type 'string'"),
])
def test_bad_settings_are_refused_naming_the_key(config, message):
    """The checks before any job (common.smk runs them in this order), on the default config merged with ``config``."""
    merged = _merged(config)
    if message is None:
        _check(merged)
        return
    with pytest.raises(InputError) as err:
        _check(merged)
    assert message in str(err.value) and "\n" not in str(err.value)




@pytest.mark.parametrize("section", ["detect", "segment"])
def test_a_gpu_that_is_not_there_is_refused(section, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    config = _merged({"samples": DEMO, section: {"device": "cuda"}})
    with pytest.raises(InputError, match=f"{section}.device cuda: this machine has no usable CUDA GPU"):
        check_config(config)
    check_config(config, jobs_run_here=False)  # on a cluster the GPU is on the job's node, checked there
    check_config(_merged({"samples": DEMO, "train": {"device": "cuda"}}))  # training is not part of a run


def test_inputs_and_results_never_overlap(tmp_path, write_image):
    data = np.zeros((8, 64, 64), np.uint16)
    image = write_image(data, name="R/s1/segmentation.ome.zarr")
    apart = write_image(data, name="elsewhere.ome.zarr")
    R = tmp_path / "R"
    for samples, results, message in [
        ({"s1": image}, R, "lies inside the results folder"),
        ({"other": image}, R, "lies inside the results folder"),
        ({"s1": image}, image, "lies inside the results folder"),
        ({"s1": image}, image / "out", "lies inside the input"),
        ({"ok": apart, "s1": image}, R / "s1", "sample 's1': input"),
    ]:
        with pytest.raises(InputError, match=message):
            check_inputs({k: str(v) for k, v in samples.items()}, None, None, str(results))
    check_inputs({"ok": str(apart)}, None, None, str(R))  # apart: fine
    check_inputs({"ok": str(apart)}, None, None, str(tmp_path / "elsewhere.results"))  # a sibling sharing a prefix


def test_voxels_too_anisotropic_for_the_models_are_refused(write_image):
    data = np.zeros((8, 64, 64), np.uint16)
    flat = write_image(data, spacing=(0.001, 50.0, 50.0), name="flat.ome.zarr")
    with pytest.raises(InputError, match=r"sample 'a': voxel size \(0.001, 50.0, 50.0\) µm .* more than 20 times"):
        check_inputs({"a": str(flat)}, None)
    thick = write_image(data, spacing=(5.0, 0.5, 0.5), name="thick.ome.zarr")
    check_inputs({"a": str(thick)}, None)  # 10x: fine (resampled onto the networks' grid)
    check_inputs({"a": str(thick)}, None, segment_method="growth")
    with pytest.raises(InputError, match="segment.method prompted sees the image at its own voxels"):
        check_inputs({"a": str(thick)}, None, segment_method="prompted")


def test_user_settings_merge_over_the_defaults_key_by_key_and_samples_replace():
    user = {"samples": {"mine": "/data/a.ome.zarr"}, "detect": {"threshold": 4.0}, "train": {"soma": {"steps": 10}}}
    merged = with_defaults(CONFIG, user)
    assert merged["samples"] == {"mine": "/data/a.ome.zarr"}                 # not merged with the demo sample
    assert merged["detect"]["threshold"] == 4.0 and merged["detect"]["method"] == CONFIG["detect"]["method"]
    assert merged["train"]["soma"] == {**CONFIG["train"]["soma"], "steps": 10}
    assert with_defaults(CONFIG, {}) == CONFIG and CONFIG["detect"]["threshold"] != 4.0  # defaults untouched


def test_a_results_folder_under_a_file_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("")
    with pytest.raises(InputError, match=r"results .*notes.txt/results: .*notes.txt is a file, not a folder"):
        check_config(_merged({"samples": DEMO, "results": str(tmp_path / "notes.txt" / "results")}))
    check_config(_merged({"samples": DEMO, "results": str(tmp_path / "new" / "results")}))  # created when needed


def test_a_region_must_lie_in_some_image_not_in_each(write_image):
    small = write_image(np.zeros((8, 64, 64), np.uint16), spacing=(1.0, 1.0, 1.0), name="small.ome.zarr")
    large = write_image(np.zeros((8, 256, 256), np.uint16), spacing=(1.0, 1.0, 1.0), name="large.ome.zarr")
    far = {"far": {"start_um": [0, 100, 100], "stop_um": [8, 200, 200]}}
    check_inputs({"s": str(small), "l": str(large)}, None, regions=far)  # in the large image only: fine
    with pytest.raises(InputError, match="sample 's': regions 'far' .* does not overlap the image"):
        check_inputs({"s": str(small)}, None, regions=far)


def test_ownership_needs_the_one_pass_maps():
    from traice.config import check_models
    from traice.weights import shipped_weights

    with pytest.raises(InputError, match="segment.method growth owns the one-pass foreground"):
        check_models({"detect": {"method": "classical"}, "segment": {"method": "growth"}})
    with pytest.raises(InputError, match="soma-only network"):
        check_models({"detect": {"method": "traice", "model": str(shipped_weights("soma"))}, "segment": {"method": "votes"}})
    check_models({"detect": {"method": "traice", "model": str(shipped_weights("soma"))}, "segment": {"method": "classical"}})
    check_models({"detect": {"method": "classical"}, "segment": {"method": "classical"}})


def test_each_stage2_method_takes_a_network_of_its_inputs():
    """prompted takes the image alone, prompted-growth's ownership network the image and the foreground:
    the other kind of weights is refused before any job, with the inputs it has."""
    from traice.config import check_models
    from traice.weights import shipped_weights

    with pytest.raises(InputError, match="segment.model .*a network of 1 input.*needs 2"):
        check_models({"detect": {"method": "traice"},
                      "segment": {"method": "prompted-growth", "model": str(shipped_weights("branch"))}})
    check_models({"detect": {"method": "traice"}, "segment": {"method": "prompted", "model": str(shipped_weights("branch"))}})
