"""Condition inputs for Animate Anyone 2, computed from the driving video.

Plain functions on torch tensors in ComfyUI layouts (IMAGE ``[T, H, W, 3]`` in 0..1, MASK ``[T, H, W]``
in 0..1), free of any ComfyUI import:

- ``environment``: shape-agnostic mask (paper eq. 2), environment frames, latent masks and the
  random scale augmentation used in training (section 3.2).
- ``objects``: the object sequence fed to the object guider (section 3.3).
- ``sam2_video``: object masks from SAM2 video segmentation (optional ``sam2`` package).
- the pose, keypoint and depth modules: the motion condition (section 3.4).

Import the submodules directly; this package imports nothing so that each stays optional.
"""
