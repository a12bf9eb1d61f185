"""Every rule that runs code declares a conda env; the envs' pins agree with pyproject.toml."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
RULE = re.compile(r"^(rule|checkpoint) (\w+):\n((?:[ \t]+.*\n|\n)*)", re.M)


def _rules():
    for smk in sorted((ROOT / "workflow" / "rules").glob("*.smk")):
        for kind, name, body in RULE.findall(smk.read_text()):
            yield smk, name, body


def _pins(specs):
    out = {}
    for spec in specs:
        name, _, version = spec.partition("==")
        out[name.strip().lower()] = version.strip()
    return out


def test_every_rule_that_runs_code_declares_a_conda_env():
    rules = list(_rules())
    assert len(rules) >= 10
    for smk, name, body in rules:
        runs_code = any(k in body for k in ("script:", "shell:", "run:"))
        if runs_code:
            match = re.search(r"conda:\s*\n\s*\"([^\"]+)\"", body)
            assert match, f"rule {name} in {smk.name} has no conda env"
            assert (smk.parent / match.group(1)).resolve().exists(), f"rule {name}: {match.group(1)} missing"


def test_env_pins_agree_with_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pinned = _pins(project["dependencies"])
    assert all(pinned.values()), "every dependency is pinned exactly"
    envs = sorted((ROOT / "envs").glob("*.yaml"))
    assert {e.stem for e in envs} >= {"gpu", "imaging", "report"}
    for env in envs:
        deps = yaml.safe_load(env.read_text())["dependencies"]
        assert "python=3.11" in deps, env.name
        pip = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
        for name, version in _pins(pip).items():
            assert name in pinned, f"{env.name}: {name} is not a project dependency"
            assert version == pinned[name], f"{env.name}: {name}=={version}, pyproject has {pinned[name]}"


def test_gpu_rules_use_the_gpu_env():
    for smk, name, body in _rules():
        if name in ("detect", "segment") or name.startswith("train_"):
            assert "envs/gpu.yaml" in body, name
