"""How a trainer starts the spatial blends of the object guider (``--blend-init``).

Loaded without an aa2-modules file, every blend's gate is 0, so the blend is the identity and the base's output
is untouched (``models.object_guider``). That is right for inference, but a gate at 0 also hides the object
guider from the loss: the guider and the blend's alpha conv get gradients only through the gate, and one scalar
gate over a random guider gets no consistent signal, so it hardly opens (the proof, ``bench/train_proof.py``:
a seed's largest gate 0.14 after 400 steps, and emptying the object frames changes the estimate by < 1 %).

* ``paper``: gates at 1, so ``alpha = sigmoid(0) = 0.5`` from the first step, as the paper's zero-initialised
  Conv2D-Sigmoid gives (section 3.3): the guider learns from step 1, and the base's output changes at once;
* ``identity``: gates at 0, the base's output kept exactly from step 1 (adapters on a frozen pretrained base);
* ``auto`` (the default): ``paper`` when the DenoisingNet's base trains too (``--modules all``: the paper's
  setting, the decoder can adapt to the blend), else ``identity``.

Only fresh blends are touched: not when the blends do not train, nor when an ``--aa2-modules`` file brought
trained ones (nor on ``--resume``, whose trained weights are loaded afterwards).
"""

from __future__ import annotations

import torch

BLEND_INITS = ("auto", "identity", "paper")
PAPER_GATE = 1.0  # alpha = gate * sigmoid(F) = 0.5 with F at zero, as the paper starts
BLEND_PREFIXES = ("spatial_blend_mid.", "spatial_blend_up.")


def resolve_blend_init(how: str, chosen: dict[str, list[str]]) -> str:
    """``auto`` -> ``paper`` if the DenoisingNet's own UNet trains, else ``identity``."""
    if how not in BLEND_INITS:
        raise ValueError(f"--blend-init is {how!r}; expected one of {BLEND_INITS}")
    if how != "auto":
        return how
    return "paper" if any(n.startswith("unet.") for n in chosen.get("denoising", ())) else "identity"


@torch.no_grad()
def init_blends(models, how: str, chosen: dict[str, list[str]]) -> str:
    """Set fresh, trained blends' gates as ``how`` says; returns what was done (for the log)."""
    how = resolve_blend_init(how, chosen)
    trained = [n for n in chosen.get("denoising", ()) if n.startswith(BLEND_PREFIXES) and n.endswith(".gate")]
    if not trained:
        return "spatial blends not trained"
    if "aa2" in (getattr(models, "aa2_modules", None) or {}).get("module_groups", ()):
        return "spatial blends from the aa2-modules file"
    params = dict(models.denoising.named_parameters())
    for name in trained:
        params[name].fill_(PAPER_GATE if how == "paper" else 0.0)
    return f"spatial blends start as {how!r}" + (" (alpha 0.5, as the paper)" if how == "paper" else " (the identity)")
