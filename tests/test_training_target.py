"""The training objective, written out by hand: v-prediction under Moore's schedule (paper eq. 1, as Moore trains).

For a fixed clip, noise and timestep the DenoisingNet sees x_t = sqrt(a) x0 + sqrt(1 - a) eps and is scored
against v = sqrt(a) eps - sqrt(1 - a) x0 with the mean squared error, where a is the zero-terminal-SNR
alpha-bar of diffusers' own DDIMScheduler configured as Moore's. Mutation it catches: an epsilon target.
"""

import torch
from diffusers import DDIMScheduler

from aa2_core.checkpoints.assembly import assemble_from_folder
from aa2_core.pipeline import images
from aa2_core.pipeline.schedulers import make_scheduler
from aa2_core.training.step import TrainStep
from test_sampler_maths import MOORE
from test_training import fixed_batch
from training_helpers import data_dir, models_dir, one_thread  # noqa: F401


@torch.no_grad()
def test_loss_is_the_mse_to_the_velocity_of_the_drawn_noise_and_timestep(models_dir, data_dir, one_thread):
    models = assemble_from_folder(models_dir)
    step = TrainStep(models, make_scheduler("ddim", "moore"), uncond_prob=0.0).eval()
    clips, generators = fixed_batch(data_dir, frames=2, count=1)
    seen = {}

    def record(module, args, output):
        seen["noisy"], seen["t"], seen["pred"] = args[0], args[1], output

    handle = step.denoising.register_forward_hook(record)
    loss = step(clips, generators())
    handle.remove()

    # what TrainStep's generator draws, in its order: the noise, then the timestep
    g = generators()[0]
    x0 = images.vae_encode(step.vae, clips[0].frames).transpose(0, 1)[None]  # (1, c, f, h, w)
    eps = torch.randn(x0.shape[1:], generator=g)[None]
    t = int(torch.randint(0, 1000, (), generator=g))
    a = DDIMScheduler(**MOORE).alphas_cumprod[t]
    assert int(seen["t"]) == t
    torch.testing.assert_close(seen["noisy"], a.sqrt() * x0 + (1 - a).sqrt() * eps, rtol=1e-5, atol=1e-5)
    v = a.sqrt() * eps - (1 - a).sqrt() * x0
    torch.testing.assert_close(loss, ((seen["pred"] - v) ** 2).mean(), rtol=1e-5, atol=1e-6)
    assert abs(((seen["pred"] - eps) ** 2).mean() - loss) > 1e-3 * loss  # an epsilon target would score differently
