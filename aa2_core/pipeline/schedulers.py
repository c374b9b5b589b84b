"""diffusers schedulers with the noise schedules our weights were trained on."""

from __future__ import annotations

from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler, LCMScheduler

from .options import Schedule, SchedulerName

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

# the released Animate-X (``families/animate_x/diffusion.py``): betas ``linspace(sqrt b0, sqrt b1)^2`` (diffusers'
# ``scaled_linear``) rescaled to zero terminal SNR, v-prediction, timesteps ``1 + k * (1000 // n)``, and DDIM's last
# step ends at alpha_bar[0] (``set_alpha_to_one=False``). Equals the released loop wherever it runs n steps
# (n divides 1000 evenly enough: 4, 5, 8, 10, 20, 25, 50); for 30 it runs 31 (one more step at t = 991).
ANIMATE_X_SCHEDULE = dict(MOORE_SCHEDULE, beta_schedule="scaled_linear", timestep_spacing="leading")

_CONFIGS = {Schedule.MOORE: MOORE_SCHEDULE, Schedule.SD15: SD15_SCHEDULE, Schedule.ANIMATE_X: ANIMATE_X_SCHEDULE}


def make_scheduler(name: SchedulerName | str = SchedulerName.DDIM, schedule: Schedule | str = Schedule.MOORE):
    """A fresh diffusers scheduler (they keep per-run state, so every run gets its own)."""
    name = SchedulerName.parse(name, "scheduler")
    schedule = Schedule.parse(schedule, "schedule")
    config = dict(_CONFIGS[schedule])
    if name == SchedulerName.DDIM:  # set_alpha_to_one=True as Moore (diffusers default); Animate-X ends at alpha_bar[0]
        return DDIMScheduler(clip_sample=False, set_alpha_to_one=schedule != Schedule.ANIMATE_X, **config)
    if name == SchedulerName.EULER:
        return EulerDiscreteScheduler(**config)
    if name == SchedulerName.DPMPP_2M:
        return DPMSolverMultistepScheduler(algorithm_type="dpmsolver++", solver_order=2, **config)
    config.pop("steps_offset")
    return LCMScheduler(clip_sample=False, steps_offset=1, **config)
