"""Our own file: the Animate Anyone 2 modules (optionally whole nets) in one ``.safetensors``.

Tensor names are prefixed by the model they belong to:

* ``denoising.``  DenoisingNet AA2 modules (``env_conv_in``, ``object_guider``, ``spatial_blend_*``)
  or, with ``whole`` nets, the full DenoisingNet (``denoising.unet.*`` too);
* ``pose.``       pose modulation (``depth_trunk``, ``depth_attention``, ``temporal``; ``guider`` if whole);
* ``reference.``  the ReferenceNet UNet (whole nets only);
* ``motion.``     the motion modules (whole nets only).

The safetensors metadata says what the file holds (JSON strings): ``format`` = "aa2-modules",
``format_version``, ``modules`` (list of prefixes present), ``base`` (what it was trained on),
``fusion_blocks``, and free-form ``notes``. Optional Animate-X modules live in the ``denoising`` part
(``denoising.ipi.*``, ``denoising.mamba.<slot>.*``); the loader builds them from their configs:
``ipi`` (``IPIConfig`` as JSON), ``mamba`` (``MambaConfig`` as JSON: slots, replace, sizes) and
``module_groups`` (JSON list of the groups held, e.g. ``["aa2", "ipi", "mamba"]``).
"""

from __future__ import annotations

import json

import torch

from ..errors import CheckpointError, describe_keys
from ..models.denoising_net import AA2_DENOISING_MODULES, ANIMATE_X_MODULES
from .io import read_metadata, read_state_dict, write_safetensors

FORMAT = "aa2-modules"
FORMAT_VERSION = 1
PREFIXES = ("denoising", "pose", "reference", "motion")


def save_aa2_file(
    path: str,
    parts: dict[str, dict[str, torch.Tensor]],
    base: str = "",
    fusion_blocks: str = "full",
    notes: str = "",
    training: dict | None = None,
    architecture: dict | None = None,
) -> None:
    """``parts`` maps a prefix (see module doc) to that model's tensors; ``training`` (JSON-able) records how
    the trainer made the file (modules, steps, stage, recipe). ``architecture``: the configs of the
    Animate-X modules in ``parts["denoising"]``, i.e. ``DenoisingNet.architecture()``."""
    unknown = set(parts) - set(PREFIXES)
    if unknown:
        raise ValueError(f"unknown AA2 file parts {sorted(unknown)}; expected some of {PREFIXES}")
    architecture = architecture or {}
    groups = module_groups(parts)
    lacking = [g for g in ANIMATE_X_MODULES if g in groups and g not in architecture]
    if lacking:
        raise ValueError(f"the denoising part holds {', '.join(lacking)} weights but no config for them; "
                         "pass architecture=denoising_net.architecture()")
    tensors = {f"{prefix}.{k}": v for prefix, sd in parts.items() for k, v in sd.items()}
    metadata = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "modules": json.dumps(sorted(prefix for prefix, sd in parts.items() if sd)),
        "base": base,
        "fusion_blocks": fusion_blocks,
        "notes": notes,
    }
    if training is not None:
        metadata["training"] = json.dumps(training)
    metadata["module_groups"] = json.dumps(groups)
    metadata.update({g: json.dumps(architecture[g]) for g in ANIMATE_X_MODULES if g in architecture})
    write_safetensors(tensors, path, metadata)


def module_groups(parts: dict[str, dict[str, torch.Tensor]]) -> list[str]:
    """Module groups held by file parts: "aa2" (the Animate Anyone 2 modules), "ipi", "mamba", "whole"."""
    denoising = parts.get("denoising", {})
    groups = [g for g, prefixes in ANIMATE_X_MODULES.items() if any(k.startswith(prefixes) for k in denoising)]
    if any(k.startswith(AA2_DENOISING_MODULES) for k in denoising) or parts.get("pose"):
        groups.insert(0, "aa2")
    if any(k.startswith("unet.") for k in denoising) or parts.get("reference") or parts.get("motion"):
        groups.append("whole")
    return groups


def load_aa2_file(path: str) -> tuple[dict[str, dict[str, torch.Tensor]], dict]:
    """Returns ``({prefix: tensors without the prefix}, metadata)``."""
    metadata = read_metadata(path)
    if metadata.get("format") != FORMAT:
        raise CheckpointError(
            f"AA2 module file ({path}): not an Animate Anyone 2 module file (metadata format is "
            f"{metadata.get('format')!r}, expected {FORMAT!r}); AA2 files are .safetensors written by this pack's trainer"
        )
    version = int(metadata.get("format_version", "0"))
    if version > FORMAT_VERSION:
        raise CheckpointError(f"AA2 module file ({path}): format version {version} is newer than this pack reads ({FORMAT_VERSION}); update the pack")
    sd = read_state_dict(path, "AA2 module file")
    parts: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in sd.items():
        prefix, _, rest = key.partition(".")
        if prefix not in PREFIXES or not rest:
            raise CheckpointError(f"AA2 module file ({path}): unexpected tensor {key!r}; names start with one of {PREFIXES}")
        parts.setdefault(prefix, {})[rest] = value
    metadata["modules"] = json.loads(metadata.get("modules", "[]"))
    if "training" in metadata:
        metadata["training"] = json.loads(metadata["training"])
    for group in ANIMATE_X_MODULES:
        if group in metadata:
            metadata[group] = json.loads(metadata[group])
    metadata["module_groups"] = module_groups(parts)  # what the tensors hold, whatever the writer claimed
    return parts, metadata


def apply_aa2_parts(model, tensors: dict[str, torch.Tensor], source: str) -> None:
    """Load a part of an AA2 file into ``model`` (DenoisingNet, PoseModulation, ...).

    Keys the model lacks are an error; keys the file lacks keep the model's current (base or no-op) weights.
    """
    expected = model.state_dict()
    unexpected = [k for k in tensors if k not in expected]
    wrong = [k for k in tensors if k in expected and tensors[k].shape != expected[k].shape]
    if unexpected or wrong:
        detail = f"unexpected keys: {describe_keys(unexpected)}" if unexpected else ""
        if wrong:
            detail += ("; " if detail else "") + "shape mismatches: " + "; ".join(
                f"{k} {tuple(tensors[k].shape)} vs {tuple(expected[k].shape)}" for k in wrong[:4]
            )
        raise CheckpointError(f"{source}: does not match the loaded base models ({detail})")
    model.load_state_dict(tensors, strict=False)
