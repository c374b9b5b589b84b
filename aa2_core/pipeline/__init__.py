"""Sampling: schedulers, the denoising loop, long-video stitching."""
