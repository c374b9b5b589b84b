"""``python -m aa2_core <command>``: the pack's command line outside ComfyUI."""

import importlib
import sys

COMMANDS = {
    "animate": ("aa2_core.cli.animate", "animate a character image along a pose video (optionally inside a driving video's scene)"),
    "check": ("aa2_core.check", "find and load every model file, then run one denoising step"),
    "convert": ("aa2_core.checkpoints.convert", "turn .pth/.ckpt pickles into .safetensors"),
    "download": ("aa2_core.download", "fetch the public model files a set needs into ComfyUI's models folder (checked by sha256)"),
    "evaluate": ("aa2_core.evaluate", "score generated videos against the truth: SSIM, PSNR*, L1, LPIPS, FID, FID-VID, FVD"),
    "train": ("aa2_core.training.train", "train the Animate Anyone 2 modules on your own videos"),
    "prepare": ("aa2_core.training.prepare_data", "turn raw videos (+ masks, keypoints, depth) into a training set for train"),
}


def usage() -> str:
    lines = ["usage: python -m aa2_core <command> [options]   (python -m aa2_core <command> --help for its options)", "", "commands:"]
    lines += [f"  {name:9s} {text}" for name, (_, text) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    if not argv or argv[0] not in COMMANDS:
        print(usage(), file=sys.stderr)
        return 2
    try:
        return importlib.import_module(COMMANDS[argv[0]][0]).main(argv[1:])
    except KeyboardInterrupt:  # Ctrl-C: every writer leaves whole files only, so a line says it all
        print(f"\n{argv[0]}: interrupted; files already written are complete, partial ones were removed", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
