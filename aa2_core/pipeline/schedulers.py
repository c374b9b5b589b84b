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


def make_scheduler(name: SchedulerName | str = SchedulerName.DDIM, schedule: Schedule | str = Schedule.MOORE):
    """A fresh diffusers scheduler (they keep per-run state, so every run gets its own)."""
    name = SchedulerName.parse(name, "scheduler")
    schedule = Schedule.parse(schedule, "schedule")
    config = dict(MOORE_SCHEDULE if schedule == Schedule.MOORE else SD15_SCHEDULE)
    if name == SchedulerName.DDIM:
        return DDIMScheduler(clip_sample=False, **config)  # set_alpha_to_one=True as Moore (diffusers default)
    if name == SchedulerName.EULER:
        return EulerDiscreteScheduler(**config)
    if name == SchedulerName.DPMPP_2M:
        return DPMSolverMultistepScheduler(algorithm_type="dpmsolver++", solver_order=2, **config)
    config.pop("steps_offset")
    return LCMScheduler(clip_sample=False, steps_offset=1, **config)
