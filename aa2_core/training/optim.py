"""Optimizer and learning-rate schedule."""

from __future__ import annotations

import torch

from ..errors import AA2Error

OPTIMIZERS = ("auto", "adamw", "adamw8bit", "sgd")


def make_optimizer(params, name: str, lr: float, weight_decay: float = 1e-2):
    """Returns ``(optimizer, description)``. ``auto``: 8-bit AdamW when bitsandbytes imports (optimizer state
    in 8 bits: a quarter of AdamW's), AdamW otherwise. ``sgd`` (plain, no momentum) exists for exact tests."""
    params = list(params)  # read twice (the device check, then the optimizer)
    if name in ("auto", "adamw8bit"):
        try:
            import bitsandbytes as bnb
        except ImportError:
            check_optimizer(name)
            return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, foreach=_foreach(params)), "AdamW (torch; bitsandbytes not installed, no 8-bit AdamW)"
        return bnb.optim.AdamW8bit(params, lr=lr, weight_decay=weight_decay), "AdamW8bit (bitsandbytes)"
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, foreach=_foreach(params)), "AdamW (torch)"
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr), "SGD (torch)"
    raise ValueError(f"unknown optimizer {name!r}; choose from {OPTIMIZERS}")


def _foreach(params) -> bool | None:
    """True when every parameter is on the CPU: torch's default there is a Python loop per tensor (a quarter of
    a tiny model's CPU step); elsewhere torch's own default (None)."""
    tensors = [p for g in params for p in g["params"]] if params and isinstance(params[0], dict) else params
    return True if tensors and all(p.device.type == "cpu" for p in tensors) else None


def check_optimizer(name: str) -> None:
    """``adamw8bit`` needs bitsandbytes: say so before any model loads."""
    if name == "adamw8bit":
        try:
            import bitsandbytes  # noqa: F401
        except ImportError as e:
            raise AA2Error(f"--optimizer adamw8bit needs bitsandbytes, which does not import here ({e}); "
                           "pip install bitsandbytes, or use --optimizer adamw") from None


def warmup_schedule(optimizer, warmup_steps: int):
    """Linear warm-up from lr/warmup to lr over ``warmup_steps`` optimizer steps, then constant."""
    warmup = max(int(warmup_steps), 0)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / warmup) if warmup else 1.0)


class Progress:
    """The run's counters, saved in every checkpoint: optimizer steps taken, micro-steps drawn (the data
    position: see ``batches``) and steps skipped for inf/NaN gradients."""

    def __init__(self):
        self.step = 0
        self.micro = 0
        self.skipped = 0

    def state_dict(self) -> dict:
        return {"step": self.step, "micro": self.micro, "skipped": self.skipped}

    def load_state_dict(self, state: dict) -> None:
        self.step, self.micro, self.skipped = int(state["step"]), int(state["micro"]), int(state["skipped"])
