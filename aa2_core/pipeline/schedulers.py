"""diffusers schedulers with the noise schedules our weights were trained on."""

from __future__ import annotations

from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler, LCMScheduler

from ..errors import AA2Error

SCHEDULERS = ("ddim", "euler", "dpmpp_2m", "lcm")
SCHEDULES = ("moore", "sd15")

# Moore-AnimateAnyone (configs/inference/inference_v2.yaml): v-prediction with zero terminal SNR
MOORE_SCHEDULE = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="linear",
    prediction_type="v_prediction",
    rescale_betas_zero_snr=True,
    timestep_spacing="trailing",
    steps_offset=1,
)
# plain SD1.5 epsilon models
SD15_SCHEDULE = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    prediction_type="epsilon",
    rescale_betas_zero_snr=False,
    timestep_spacing="leading",
    steps_offset=1,
)


def make_scheduler(name: str = "ddim", schedule: str = "moore"):
    if name not in SCHEDULERS:
        raise AA2Error(f"scheduler must be one of {SCHEDULERS}, got {name!r}")
    if schedule not in SCHEDULES:
        raise AA2Error(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    config = dict(MOORE_SCHEDULE if schedule == "moore" else SD15_SCHEDULE)
    if name == "ddim":
        return DDIMScheduler(clip_sample=False, **config)  # set_alpha_to_one=True as Moore (diffusers default)
    if name == "euler":
        return EulerDiscreteScheduler(**config)
    if name == "dpmpp_2m":
        return DPMSolverMultistepScheduler(algorithm_type="dpmsolver++", solver_order=2, **config)
    config.pop("steps_offset")
    return LCMScheduler(clip_sample=False, steps_offset=1, **config)
