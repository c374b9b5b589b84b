"""The papers' evaluation metrics (``python -m aa2_core evaluate``).

``frames`` (SSIM, PSNR, PSNR*, L1), ``frechet`` (the Fréchet distance behind FID, FID-VID and FVD), one module
per metric network (``lpips``, ``inception``, ``resnet3d``, ``i3d``) whose state-dict keys match the files users
have, ``weights`` (loading those files with key/shape checks), ``clips`` (16-frame clips and their resizing),
``inputs`` (the GENERATED/TRUTH folders). Nothing here downloads anything.
"""
