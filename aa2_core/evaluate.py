"""``python -m aa2_core evaluate GENERATED/ TRUTH/``: the papers' metrics on generated videos against the truth.

    python -m aa2_core evaluate out/ truth/                                  # SSIM, PSNR, PSNR*, L1
    python -m aa2_core evaluate out/ truth/ --lpips alex.pth --lpips-backbone alexnet-owt-7be5be79.pth \\
        --inception pt_inception-2015-12-05-6726825d.pth --resnet3d resnet-50-kinetics.pth \\
        --i3d i3d_pretrained_400.pt --json scores.json

GENERATED and TRUTH hold videos or frame folders matched by name (see ``metrics.inputs``). The metric
networks come only from the files given (nothing is downloaded); a metric whose file is missing is skipped,
and the table says so. Each number's definition is printed under the table (and in ``metrics/frames.py``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from dataclasses import asdict, dataclass

import numpy as np
import torch

from .atomic import atomic_path, check_output_file
from .errors import AA2Error
from .metrics import clips, frames, frechet, i3d, inception, inputs, lpips, resnet3d
from .metrics.resnet3d import MEAN as KINETICS_MEAN

# column order of Animate-X's table (a superset of AA2's SSIM / PSNR* / LPIPS / FVD), then our extras
COLUMNS = ("PSNR*", "SSIM", "L1", "LPIPS", "FID", "FID-VID", "FVD", "PSNR", "SSIM-DisCo")
BETTER = {"PSNR*": "higher", "SSIM": "higher", "L1": "lower", "LPIPS": "lower", "FID": "lower", "FID-VID": "lower",
          "FVD": "lower", "PSNR": "higher", "SSIM-DisCo": "higher"}
DEFINITIONS = {
    "PSNR*": "DisCo's corrected PSNR: per frame 20*log10(255/sqrt(MSE)) on 8-bit values in float64, 100 if MSE=0, "
             "mean over frames (github:Wangt-CN/DisCo tool/metrics/ssim_l1_lpips_psnr.py)",
    "SSIM": "Wang et al. 2004, 11-tap Gaussian window sigma 1.5, per RGB channel, valid region (5 px border out), "
            "mean over frames (= skimage gaussian_weights=True, use_sample_covariance=False)",
    "L1": "DisCo's L1: mean |gen - truth| over 8-bit values divided by H*W, mean over frames (the papers' E-04 column)",
    "LPIPS": "LPIPS v0.1 (richzhang/PerceptualSimilarity, lpips package) with torchvision {backbone} features, inputs in "
             "[-1,1], at the frames' own size, mean over frames",
    "FID": "pytorch-fid: Inception v3 (pt_inception-2015-12-05) pool3 2048-d per frame, bilinear 299x299, "
           "Fréchet distance between all generated and all truth frames",
    "FID-VID": "DisCo's FID-VID: 3D ResNet (Hara et al., kinetics) pooled 2048-d per {n}-frame clip, PIL bicubic "
               "112x112, minus the Kinetics mean; Fréchet distance between clip sets",
    "FVD": "DisCo's FVD (FVD-3DInception): I3D (piergiaj layout) Kinetics-400 logits averaged over time per "
           "{n}-frame clip, PIL bicubic 224x224, [-1,1]; Fréchet distance between clip sets "
           "(StyleGAN-V also uses 16-frame clips and I3D logits, through the TF-Hub TorchScript I3D)",
    "PSNR": "10*log10(255^2/MSE), one MSE over every value of every frame "
            "(= torchmetrics PeakSignalNoiseRatio(data_range=255) over the whole set); inf if identical",
    "SSIM-DisCo": "DisCo's SSIM: OpenCV grayscale, skimage structural_similarity defaults (7x7 uniform window, "
                  "sample covariances), mean over frames",
}


@dataclass
class Score:
    value: float | None
    definition: str
    better: str
    skipped: str | None = None


@dataclass
class MetricFiles:
    """The user's metric network files (None: that metric is skipped)."""
    lpips: str | None = None
    lpips_backbone: str | None = None
    inception: str | None = None
    resnet3d: str | None = None
    i3d: str | None = None


class Networks:
    """The metric networks loaded from the given files (before any video is read, so a bad file fails fast)."""

    def __init__(self, files: MetricFiles, device: str):
        self.device = device
        self.lpips = lpips.load(files.lpips, files.lpips_backbone).to(device) if files.lpips else None
        self.inception = inception.load(files.inception).to(device) if files.inception else None
        self.resnet3d = resnet3d.load(files.resnet3d).to(device) if files.resnet3d else None
        self.i3d = i3d.load(files.i3d).to(device) if files.i3d else None


def _batches(x: np.ndarray, size: int):
    for i in range(0, len(x), size):
        yield x[i:i + size]


def _unit(x: np.ndarray, device: str) -> torch.Tensor:
    """uint8 ``[N, H, W, 3]`` -> float ``[N, 3, H, W]`` in 0..1."""
    return torch.from_numpy(np.ascontiguousarray(x)).to(device).permute(0, 3, 1, 2).float() / 255.0


class Accumulator:
    """Running sums and feature lists over all video pairs."""

    def __init__(self, nets: Networks, batch: int, clip_frames: int):
        self.nets, self.batch, self.clip_frames = nets, batch, clip_frames
        self.per_frame = {k: [] for k in ("PSNR*", "SSIM", "L1", "LPIPS", "SSIM-DisCo")}
        self.sse, self.count = 0.0, 0
        self.features = {k: ([], []) for k in ("FID", "FID-VID", "FVD")}
        self.videos = self.frames = self.clips = 0

    @torch.no_grad()
    def add(self, gen: np.ndarray, truth: np.ndarray) -> None:
        self.videos += 1
        self.frames += len(gen)
        self.per_frame["PSNR*"].append(frames.psnr_star(gen, truth))
        self.per_frame["SSIM"].append(frames.ssim(gen, truth))
        self.per_frame["SSIM-DisCo"].append(frames.ssim_disco(gen, truth))
        self.per_frame["L1"].append(frames.l1_disco(gen, truth))
        sse, count = frames.squared_error(gen, truth)
        self.sse, self.count = self.sse + sse, self.count + count
        dev = self.nets.device
        if self.nets.lpips is not None:
            self.per_frame["LPIPS"].append(np.concatenate([
                self.nets.lpips(_unit(g, dev), _unit(t, dev)).double().cpu().numpy()
                for g, t in zip(_batches(gen, self.batch), _batches(truth, self.batch))]))
        if self.nets.inception is not None:
            for side, video in enumerate((gen, truth)):
                self.features["FID"][side].extend(self.nets.inception(_unit(b, dev)).double().cpu().numpy()
                                                  for b in _batches(video, self.batch))
        gen_clips, truth_clips = clips.split(gen, self.clip_frames), clips.split(truth, self.clip_frames)
        self.clips += len(gen_clips)
        for side, video_clips in enumerate((gen_clips, truth_clips)):
            for clip in video_clips:
                if self.nets.resnet3d is not None:
                    x = clips.clip_tensor(clip, 112) - torch.tensor(KINETICS_MEAN).view(3, 1, 1, 1)
                    self.features["FID-VID"][side].append(self.nets.resnet3d(x[None].to(dev)).double().cpu().numpy())
                if self.nets.i3d is not None:
                    x = clips.clip_tensor(clip, 224) / 127.5 - 1
                    self.features["FVD"][side].append(self.nets.i3d(x[None].to(dev)).double().cpu().numpy())

    def scores(self, files: MetricFiles) -> dict[str, Score]:
        out = {}
        for name in COLUMNS:
            backbone = {"alex": "AlexNet", "vgg": "VGG16"}.get(getattr(self.nets.lpips, "kind", None), "AlexNet/VGG16")
            definition = DEFINITIONS[name].format(n=self.clip_frames, backbone=backbone)
            out[name] = Score(None, definition, BETTER[name])
        for name, values in self.per_frame.items():
            if values:
                out[name].value = float(np.concatenate(values).mean())
        out["PSNR"].value = frames.psnr_from(self.sse, self.count)
        missing = {"LPIPS": (files.lpips, "--lpips"), "FID": (files.inception, "--inception"),
                   "FID-VID": (files.resnet3d, "--resnet3d"), "FVD": (files.i3d, "--i3d")}
        for name, (given, option) in missing.items():
            if not given:
                out[name].skipped = f"no {option} file given"
        for name, (gen, truth) in self.features.items():
            if out[name].skipped:
                continue
            n = sum(len(f) for f in gen)
            if n < 2:
                unit = "frames" if name == "FID" else f"{self.clip_frames}-frame clips"
                out[name].skipped = f"needs at least 2 {unit} per side, got {n}"
                continue
            out[name].value = frechet.features_distance(np.concatenate(gen), np.concatenate(truth))
        return out


def evaluate(generated: str, truth: str, files: MetricFiles | None = None, device: str = "cpu", batch: int = 8,
             clip_frames: int = clips.CLIP_FRAMES, log=None) -> dict:
    """Score every generated video against its truth video; returns the report ``--json`` writes."""
    files = files or MetricFiles()
    pairs = inputs.match(inputs.list_videos(generated, "GENERATED"), inputs.list_videos(truth, "TRUTH"))
    nets = Networks(files, device)
    acc = Accumulator(nets, batch, clip_frames)
    for i, (name, gen_path, truth_path) in enumerate(pairs):
        gen, tru = inputs.read_frames(gen_path), inputs.read_frames(truth_path)
        inputs.check_pair(name, gen_path, gen, truth_path, tru)
        smallest = max(11, getattr(nets.lpips, "min_size", 0))  # SSIM's window; LPIPS's backbone
        if min(gen.shape[1:3]) < smallest:
            raise AA2Error(f"video {name!r}: frames of {gen.shape[2]}x{gen.shape[1]} pixels; expected at least "
                           f"{smallest}x{smallest} (SSIM's 11x11 window{', the LPIPS backbone' if smallest > 11 else ''})")
        if log:
            log(f"[{i + 1}/{len(pairs)}] {name}: {len(gen)} frames {gen.shape[2]}x{gen.shape[1]}")
        acc.add(gen, tru)
    scores = acc.scores(files)
    return dict(generated=os.path.abspath(generated), truth=os.path.abspath(truth), videos=acc.videos,
                frames=acc.frames, clips=acc.clips, clip_frames=clip_frames,
                metrics={k: asdict(v) for k, v in scores.items()})


def _fmt(name: str, value: float | None) -> str:
    if value is None:
        return "--"
    if math.isinf(value):
        return "inf"
    if name == "L1":
        return f"{value:.2E}"
    return f"{value:.3f}" if name in ("SSIM", "SSIM-DisCo", "LPIPS") else f"{value:.2f}"


def table(report: dict) -> str:
    """The paper-style row, then one line per metric with its definition (or why it was skipped)."""
    metrics = report["metrics"]
    arrow = {"higher": "↑", "lower": "↓"}
    heads = [f"{k}{arrow[metrics[k]['better']]}" for k in COLUMNS]
    cells = [_fmt(k, metrics[k]["value"]) for k in COLUMNS]
    widths = [max(len(h), len(c)) for h, c in zip(heads, cells)]
    label = os.path.basename(os.path.normpath(report["generated"])) or report["generated"]
    lw = max(len(label), 6)
    lines = [f"{report['videos']} videos, {report['frames']} frames and {report['clips']} clips of "
             f"{report['clip_frames']} frames per side: {report['generated']} vs {report['truth']}", "",
             " ".join([" " * lw] + [h.rjust(w) for h, w in zip(heads, widths)]),
             " ".join([label.ljust(lw)] + [c.rjust(w) for c, w in zip(cells, widths)]), ""]
    for k in COLUMNS:
        m = metrics[k]
        lines.append(f"  {k:10s} {'skipped: ' + m['skipped'] if m['skipped'] else m['definition']}")
    return "\n".join(lines)


def _json_safe(value):
    """JSON has no infinity: an identical set's PSNR is written as the string "inf"."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aa2_core evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("generated", help="folder of generated videos (or of frame folders)")
    parser.add_argument("truth", help="folder of ground-truth videos with the same names")
    parser.add_argument("--lpips", help="the lpips package's linear layers (weights/v0.1/alex.pth or vgg.pth), "
                                        "or a full lpips.LPIPS state dict")
    parser.add_argument("--lpips-backbone", help="torchvision AlexNet/VGG16 weights (alexnet-owt-7be5be79.pth, "
                                                 "vgg16-397923af.pth) for --lpips")
    parser.add_argument("--inception", help="pytorch-fid's pt_inception-2015-12-05-6726825d.pth (FID)")
    parser.add_argument("--resnet3d", help="Hara et al.'s resnet-50-kinetics.pth (FID-VID)")
    parser.add_argument("--i3d", help="I3D weights in the piergiaj pytorch-i3d layout, e.g. i3d_pretrained_400.pt "
                                      "or rgb_imagenet.pt (FVD)")
    parser.add_argument("--clip-frames", type=int, default=clips.CLIP_FRAMES, help="frames per FVD / FID-VID clip")
    parser.add_argument("--batch", type=int, default=8, help="frames per network batch")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ...")
    parser.add_argument("--json", help="also write the numbers and definitions to this file")
    args = parser.parse_args(argv)
    files = MetricFiles(args.lpips, args.lpips_backbone, args.inception, args.resnet3d, args.i3d)
    try:
        if args.lpips_backbone and not args.lpips:
            raise AA2Error("--lpips-backbone goes with --lpips (the lpips package's linear-layer file)")
        if args.clip_frames < 1 or args.batch < 1:
            raise AA2Error("--clip-frames and --batch must be at least 1")
        if args.device != "cpu":  # torch's own error for a missing GPU comes as a traceback from deep inside
            from .cli.animate import check_device

            check_device(args.device)
        if args.json:  # before the metrics run, not after
            check_output_file(args.json, "--json")
        report = evaluate(args.generated, args.truth, files, args.device, args.batch, args.clip_frames,
                          log=lambda s: print(s, file=sys.stderr))
    except AA2Error as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(table(report))
    if args.json:
        with atomic_path(args.json) as tmp, open(tmp, "w") as f:  # an interrupted write keeps the previous file
            json.dump(_json_safe(report), f, indent=2, allow_nan=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
