"""``python -m aa2_core <command>``: the pack's command line outside ComfyUI."""

import sys


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {
        "animate": "aa2_core.pipeline.animate_cli",
        "check": "aa2_core.check",
        "convert": "aa2_core.checkpoints.convert",
        "train": "aa2_core.training.train",
    }
    if not argv or argv[0] not in commands:
        print(f"usage: python -m aa2_core {{{','.join(commands)}}} ...")
        return 2
    import importlib

    return importlib.import_module(commands[argv[0]]).main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
