"""Workflow configuration that needs no Snakemake: parameter objects, samples, and every check made before any job.

The checks raise :class:`~traice.core.errors.InputError` with one line naming
the config key, the sample or the file: the schema (types, names), then what a
schema cannot say (ordered pairs and boxes, a GPU that is not there), then the
inputs themselves (readable images, boxes inside them, inputs and results apart)
and the weights files.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from pathlib import Path
from typing import Any, TypeVar

from traice.core.errors import InputError, check_radius_range
from traice.core.grid import MODEL_SPACING_UM, needs_resampling
from traice.core.maps import CHANNELS
from traice.core.roi import check_ordered, named_boxes_um, roi_boxes
from traice.core.windows import mirror_axes
from traice.io.ome import is_ome_zarr, open_image

T = TypeVar("T")

MAX_ANISOTROPY = 20.0
"""Largest ratio of voxel sides an input may have (the models work at 1.25 x 0.4 x 0.4 µm, ratio 3.1)."""


def from_config(cls: type[T], section: dict[str, Any] | None, **extra: Any) -> T:
    """Build a parameter dataclass from a config section (lists become tuples; unknown keys rejected)."""
    section = {**(section or {}), **extra}
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(section) - names
    if unknown:
        raise ValueError(f"{cls.__name__} has no parameter(s) {sorted(unknown)}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in section.items()})


def with_defaults(defaults: dict[str, Any], user: dict[str, Any]) -> dict[str, Any]:
    """The user's settings over the defaults, key by key at every depth, as Snakemake merges config files;
    except ``samples``, which the user's replace whole (naming one's own images never runs the demo sample too)."""
    def merge(base: dict, extra: dict, top: bool) -> dict:
        out = copy.deepcopy(base)
        for key, value in extra.items():
            nested = isinstance(value, dict) and isinstance(out.get(key), dict) and not (top and key == "samples")
            out[key] = merge(out[key], value, False) if nested else copy.deepcopy(value)
        return out

    return merge(defaults, user, True)


def is_synthetic(spec: Any) -> bool:
    return isinstance(spec, dict) and "synthetic" in spec


def sample_source(spec: Any) -> tuple[str, list[float] | None]:
    """A real sample's configured path and voxel size override (µm, z y x; None = the file's)."""
    if isinstance(spec, dict):
        return str(spec["path"]), spec.get("voxel_size_um")
    return str(spec), None


def sample_atlas(spec: Any) -> dict | None:
    """A sample's registered atlas, ``{annotation, structures}`` paths (:mod:`traice.io.atlas`), or None."""
    return spec.get("atlas") if isinstance(spec, dict) else None


def is_converted(spec: Any) -> bool:
    """Whether the workflow converts the sample into OME-Zarr first (rule ``convert``): a real sample that is
    not an OME-Zarr folder (TIFF planes or stacks, :mod:`traice.io.convert`), or one given a voxel size."""
    if is_synthetic(spec):
        return False
    path, voxel = sample_source(spec)
    return voxel is not None or not is_ome_zarr(path)


def sample_image(sample: str, spec: Any, results: str) -> str:
    """Where a sample's OME-Zarr image is: its configured path, or where the workflow synthesises or
    converts it (``{results}/{sample}/input.ome.zarr``)."""
    if is_synthetic(spec) or is_converted(spec):
        return str(Path(results) / sample / "input.ome.zarr")
    return sample_source(spec)[0]


def check_schema(config: dict[str, Any], schema: dict[str, Any]) -> None:
    """InputError naming the key of the first place ``config`` breaks the JSON ``schema`` (types, names, ranges)."""
    import jsonschema

    error = jsonschema.exceptions.best_match(jsonschema.validators.validator_for(schema)(schema).iter_errors(config))
    if error is not None:
        key = ".".join(str(p) for p in error.absolute_path) or "config"
        raise InputError(f"{key}: {error.message}")


def check_config(config: dict[str, Any], jobs_run_here: bool = True) -> None:
    """What the schema cannot say, before any job: InputError naming the key.

    ``jobs_run_here``: the jobs run on this machine (not on cluster nodes), so a
    GPU asked for must be here; on a cluster the job itself checks (``pick_device``).
    """
    check_writable("results", config["results"])
    if not config["samples"]:
        raise InputError("samples: none given; name at least one image (samples: {name: path})")
    check_radius_range("detect.soma_radius_um", config["detect"]["soma_radius_um"])
    mirror = config["detect"].get("mirror") or ""
    try:
        mirror_axes(mirror)
    except ValueError:
        raise InputError(f"detect.mirror {mirror!r} names an axis twice; give each of z, y, x at most once") from None
    for name, box in (named_boxes_um(config.get("roi")) or {}).items():
        check_ordered(f"roi '{name}'", box)
    for name, box in (config.get("regions") or {}).items():
        check_ordered(f"regions '{name}'", box)
    for section in ("detect", "segment") if jobs_run_here else ():
        check_device(f"{section}.device", (config.get(section) or {}).get("device"))


def check_device(key: str, device: str | None) -> None:
    """InputError naming ``key`` where ``device`` is ``cuda`` and this machine has no usable CUDA GPU."""
    if device == "cuda":
        import torch  # only when a GPU is asked for

        if not torch.cuda.is_available():
            raise InputError(f"{key} cuda: this machine has no usable CUDA GPU; use auto or cpu")


def check_writable(key: str, folder: str) -> None:
    """InputError unless ``folder`` is, or can be made, a folder this process may write in."""
    path = Path(folder).absolute()
    existing = next(p for p in [path, *path.parents] if p.exists())
    if not existing.is_dir():
        raise InputError(f"{key} {folder}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"{key} {folder}: no permission to write in {existing}")


def check_inputs(samples: dict[str, Any], channel: int | None, roi: dict | None = None, results: str | None = None,
                 regions: dict | None = None, segment_method: str | None = None) -> None:
    """Open every real input image once, before any job; raise InputError naming the sample.

    The ROI must lie in each image, each region in at least one (samples may
    differ in size), and inputs and results must not overlap: traice never
    writes to, moves or deletes its inputs, so an input inside ``results`` (or
    ``results`` inside an input) is refused.
    """
    out = Path(results).resolve() if results is not None else None
    outside: dict[str, list[str]] = {name: [] for name in (regions or {})}  # region -> samples it misses
    real = [name for name, spec in samples.items() if not is_synthetic(spec)]
    for name, spec in samples.items():
        atlas = sample_atlas(spec)
        if atlas:
            from traice.io.atlas import Atlas

            try:
                Atlas.open(atlas["annotation"], atlas["structures"], (1, 1, 1), (1.0, 1.0, 1.0))  # headers only
            except InputError as err:
                raise InputError(f"sample '{name}': {err}") from None
        if is_synthetic(spec):
            continue
        try:
            path, voxel = sample_source(spec)
            source = Path(path).resolve()
            if out is not None and (source == out or out in source.parents):
                raise InputError(f"input {spec} lies inside the results folder {results}; traice never writes "
                                 "to its inputs: choose a results folder apart from them")
            if out is not None and source in out.parents:
                raise InputError(f"the results folder {results} lies inside the input {spec}; traice never writes "
                                 "to its inputs: choose a results folder apart from them")
            image = converted_image(path, channel, voxel) if is_converted(spec) else open_image(path, channel)
            if max(image.spacing) / min(image.spacing) > MAX_ANISOTROPY:
                raise InputError(f"voxel size {image.spacing} µm (z, y, x) is more than {MAX_ANISOTROPY:g} times "
                                 "longer on one axis than on another; the models cannot use such voxels")
            if segment_method == "prompted" and needs_resampling(image.spacing):
                raise InputError(f"voxel size {tuple(image.spacing)} µm: segment.method prompted sees the image at "
                                 f"its own voxels, and was trained on {MODEL_SPACING_UM}; use segment.method growth "
                                 "(resampled onto that grid)")
            roi_boxes(roi, image.bounds, image.spacing)
            for region, box in (regions or {}).items():
                try:
                    roi_boxes({region: box}, image.bounds, image.spacing, key="regions")
                except InputError as err:
                    outside[region].append(f"sample '{name}': {err}")
        except InputError as err:
            raise InputError(f"sample '{name}': {err}") from None
    for region, misses in outside.items():
        if real and len(misses) == len(real):
            raise InputError(misses[0])


def converted_image(path: str, channel: int | None, voxel_size_um):
    """What the conversion of a microscope file will give (:class:`traice.io.convert.SourceImage`: shape, voxel
    size), from its headers only."""
    from traice.io.convert import SourceImage

    return SourceImage.check(path, channel, voxel_size_um)


def check_models(config: dict[str, Any]) -> None:
    """Raise InputError when a configured weights file (``detect.model``, ``segment.model``) is missing or of
    the wrong kind, or when the segment method needs the one-pass maps and detection will not make them."""
    from traice.stages.segment.params import NEEDS_MAPS

    detect, segment = config.get("detect") or {}, config.get("segment") or {}
    if segment.get("method") in NEEDS_MAPS and detect.get("method") != "traice":
        raise InputError(f"segment.method {segment['method']} owns the one-pass foreground, which only "
                         f"detect.method traice makes (detect.method is {detect.get('method')})")
    methods = {"detect": ("traice",), "segment": ("prompted", "prompted-growth")}  # the methods that load a model
    kinds = {"detect": None, "segment": "prompted"}  # the checkpoint kind each network method loads
    inputs = {"prompted": 1, "prompted-growth": 2}  # stage 2 sees the image; the ownership network also the foreground
    for section, kind in kinds.items():
        path = (config.get(section) or {}).get("model")
        if path is None or config[section].get("method") not in methods[section]:
            continue
        if not Path(path).is_file():
            raise InputError(f"{section}.model {path}: no such file")
        from traice.nn.checkpoints import kind_name, load_checkpoint  # torch: only when a weights file is configured

        try:
            checkpoint = load_checkpoint(path)
        except Exception as err:  # torch raises many types for a file that is not a checkpoint
            raise InputError(f"{section}.model {path}: not a traice checkpoint ({type(err).__name__})") from None
        found = checkpoint.get("kind")
        if found != kind:
            raise InputError(f"{section}.model {path}: a {kind_name(found)} checkpoint, expected {kind_name(kind)}")
        wanted = inputs.get(config[section]["method"]) if section == "segment" else None
        if wanted and checkpoint["config"].get("in_channels", 1) != wanted:
            raise InputError(f"segment.model {path}: a network of {checkpoint['config'].get('in_channels', 1)} "
                             f"input(s); segment.method {config[section]['method']} needs {wanted} "
                             f"({'image and one-pass foreground' if wanted == 2 else 'the image'})")
        channels = checkpoint["config"].get("out_channels", 1)
        if section == "detect" and segment.get("method") in NEEDS_MAPS and channels != len(CHANNELS):
            raise InputError(f"detect.model {path}: a soma-only network ({channels} output); segment.method "
                             f"{segment['method']} needs a one-pass network ({len(CHANNELS)} outputs: soma, foreground, offsets)")
    if detect.get("adapter") and detect.get("method") == "traice":  # after detect.model is known to be usable
        check_adapter(detect["adapter"], detect.get("model"))


def check_adapter(adapter: str, model: str | None) -> None:
    """InputError unless ``adapter`` is a LoRA adapter file fine-tuned from ``model`` (None: the shipped
    one-pass weights)."""
    if not Path(adapter).is_file():
        raise InputError(f"detect.adapter {adapter}: no such file")
    from traice.nn.checkpoints import load_model
    from traice.nn.lora import fingerprint, read_adapter
    from traice.weights import shipped_weights

    try:
        base = read_adapter(adapter)["base"]
    except ValueError as err:
        raise InputError(f"detect.adapter {err}") from None
    found = fingerprint(load_model(model or shipped_weights("cells")))
    if base != found:
        raise InputError(f"detect.adapter {adapter}: fine-tuned from other weights than detect.model "
                         f"{model or 'shipped'} (fingerprint {base}, not {found})")
