"""Bad ``train`` flags and files (issue 16): each gives an exit code other than 0 and one line naming the flag or
file, the value and what was expected; never a traceback, and never after a model has loaded (the table runs
with ``engine.load_models`` replaced by a failure, so a row that gets that far fails).

Each row: how to build the argv, the exit code (2: argparse refused the value; 1: the pack's error), and a
fragment of the one line printed. Rows about dataset.json and clip files are in test_bad_inputs_data.py."""

import os
import pickle
import subprocess
import sys

import pytest

from aa2_core.__main__ import main
from aa2_core.training import engine

from training_helpers import PYTHON, data_dir, models_dir, subprocess_env  # noqa: F401


class Case:
    def __init__(self, tmp, data, models, monkeypatch=None):
        self.tmp, self.data, self.models, self.mp = tmp, data, models, monkeypatch

    def argv(self, *extra, drop=(), out=None, tensorboard=False):
        """A good command line (that would train) with ``extra`` added and the flags in ``drop`` left out."""
        flags = {"--data": self.data, "--models": self.models, "--out": out or str(self.tmp / "out.safetensors")}
        base = [x for k, v in flags.items() if k not in drop for x in (k, v)]
        return ["train", *base, "--frames", "2", "--steps", "1", "--workers", "0", "--cpu", *([] if tensorboard else ["--no-tensorboard"]),
                *map(str, extra)]

    def file(self, name="file", text="x"):
        (self.tmp / name).parent.mkdir(parents=True, exist_ok=True)
        (self.tmp / name).write_text(text)
        return self.tmp / name

    def folder(self, name):
        (self.tmp / name).mkdir(parents=True, exist_ok=True)
        return self.tmp / name


class RunsCode:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def planted_pickle(c):
    """A run folder whose newest checkpoint holds a code-running custom_checkpoint_1.pkl (state.json and all)."""
    step = c.folder("run/checkpoints/step_0000002")
    (step / "state.json").write_text("{}")
    (step / "custom_checkpoint_1.pkl").write_bytes(pickle.dumps(RunsCode(c.tmp / "marker")))
    return c.argv("--resume", c.tmp / "run")


def not_importable(*names):
    def build(c):
        for name in names:  # None in sys.modules: importing it raises ImportError
            c.mp.setitem(sys.modules, name, None)
        return c.argv(tensorboard=True)
    return build


def not_a_number(flag, low):
    return lambda c: c.argv(flag, "x"), 2, f"argument {flag}: 'x' is not a whole number; expected one >= {low}"


def too_small(flag, value, low):
    return lambda c: c.argv(flag, value), 2, f"argument {flag}: {value} is too small; expected a whole number >= {low}"


def out_of_range(flag, value, expected):
    return lambda c: c.argv(flag, value), 2, f"argument {flag}: {value} is out of range; expected {expected}"


ROWS = {
    # the train cases issue 16 found
    "--batch-size 0": too_small("--batch-size", 0, 1),
    "--uncond-prob 5": out_of_range("--uncond-prob", 5, "a number >= 0 and <= 1"),
    "--out an existing folder": (lambda c: c.argv(out=str(c.folder("out.safetensors"))), 1, "out.safetensors is an existing folder; expected a file name"),
    "--out under a file": (lambda c: c.argv(out=str(c.file() / "out.safetensors")), 1, "file is a file, so no folder can be made under it"),
    "--out not .safetensors": (lambda c: c.argv(out=str(c.tmp / "out.pt")), 1, "the extension '.pt' is not one this writes; expected .safetensors"),
    "--out without extension": (lambda c: c.argv(out=str(c.tmp / "out")), 1, "the extension '(none)' is not one this writes"),
    "--resume with a code-running pickle": (planted_pickle, 1, "custom_checkpoint_1.pkl: a pickle can run code when loaded"),
    "--modules bogus": (lambda c: c.argv("--modules", "bogus"), 2,
                        "argument --modules: unknown group 'bogus'; expected comma-separated groups from: aa2, temporal, all"),
    # numbers
    "--batch-size x": not_a_number("--batch-size", 1),
    "--grad-accum 0": too_small("--grad-accum", 0, 1),
    "--steps 0": too_small("--steps", 0, 1),
    "--steps 1.5": (lambda c: c.argv("--steps", "1.5"), 2, "argument --steps: '1.5' is not a whole number; expected one >= 1"),
    "--frames 0": too_small("--frames", 0, 1),
    "--stride 0": too_small("--stride", 0, 1),
    "--warmup-steps -1": too_small("--warmup-steps", -1, 0),
    "--seed -1": too_small("--seed", -1, 0),
    "--workers -1": too_small("--workers", -1, 0),
    "--log-every 0": too_small("--log-every", 0, 1),
    "--checkpoint-every -1": too_small("--checkpoint-every", -1, 0),
    "--validate-every x": not_a_number("--validate-every", 0),
    "--validate-steps 0": too_small("--validate-steps", 0, 1),
    "--max-bad-steps 0": too_small("--max-bad-steps", 0, 1),
    "--uncond-prob -0.1": out_of_range("--uncond-prob", -0.1, "a number >= 0 and <= 1"),
    "--uncond-prob nan": out_of_range("--uncond-prob", "nan", "a number >= 0 and <= 1"),
    "--lr 0": out_of_range("--lr", 0, "a number > 0"),
    "--lr -0.5": out_of_range("--lr", "-0.5", "a number > 0"),
    "--lr inf": out_of_range("--lr", "inf", "a number > 0"),
    "--lr nan": out_of_range("--lr", "nan", "a number > 0"),
    "--lr fast": (lambda c: c.argv("--lr", "fast"), 2, "argument --lr: 'fast' is not a number; expected a number > 0"),
    "--max-grad-norm -1": out_of_range("--max-grad-norm", -1, "a number >= 0"),
    "--validate-cfg nan": out_of_range("--validate-cfg", "nan", "a number >= 0"),
    "--scale-range high below low": (lambda c: c.argv("--scale-range", "1.2,0.8"), 2,
                                     "argument --scale-range: '1.2,0.8' is out of range; expected 0 < LOW <= HIGH, e.g. 0.8,1.2"),
    "--scale-range zero": (lambda c: c.argv("--scale-range", "0,1"), 2, "argument --scale-range: '0,1' is out of range"),
    "--scale-range nan": (lambda c: c.argv("--scale-range", "nan,1"), 2, "argument --scale-range: 'nan,1' is out of range"),
    "--scale-range one value": (lambda c: c.argv("--scale-range", "0.8"), 2,
                                "argument --scale-range: '0.8' is not LOW,HIGH; expected two numbers such as 0.8,1.2"),
    "--lr-scale ipi=0": (lambda c: c.argv("--lr-scale", "ipi=0"), 2, "argument --lr-scale: ipi=0: expected a factor > 0"),
    "--lr-scale ipi=x": (lambda c: c.argv("--lr-scale", "ipi=x"), 2, "argument --lr-scale: 'ipi=x': expected GROUP=FACTOR[,...] with FACTOR a number"),
    # files and folders
    "--run-dir a file": (lambda c: c.argv("--run-dir", c.file("run")), 1, "run is a file; expected a folder"),
    "--run-dir under a file": (lambda c: c.argv("--run-dir", c.file() / "run"), 1, "file is a file, so no folder can be made under it"),
    "default run dir under a file": (lambda c: c.argv(out=str(c.file("sub") / "x.safetensors")), 1, "sub is a file, so no folder can be made"),
    "--models missing": (lambda c: c.argv("--models", c.tmp / "nowhere"), 1, "nowhere: no such folder; expected the ComfyUI models folder"),
    "--aa2-modules missing": (lambda c: c.argv("--aa2-modules", c.tmp / "stage1.safetensors"), 1,
                              "stage1.safetensors does not exist; expected an aa2-modules .safetensors file"),
    "--aa2-modules a folder": (lambda c: c.argv("--aa2-modules", c.folder("stage1")), 1, "stage1 is a folder; expected an aa2-modules .safetensors"),
    "--resume missing": (lambda c: c.argv("--resume", c.tmp / "old_run"), 1,
                         "old_run: no such folder; expected a run folder (--run-dir) or one of its checkpoints/step_N folders"),
    "--resume a run folder without checkpoints": (lambda c: c.folder("run/checkpoints") and c.argv("--resume", c.tmp / "run"), 1,
                                                  "run: no complete checkpoint in"),
    "--resume a folder that is no checkpoint": (lambda c: c.argv("--resume", c.folder("stuff")), 1,
                                                "stuff: no checkpoints folder and no state.json in it; expected a run folder"),
    "--resume a cut checkpoint folder": (lambda c: c.file("step_0000001/state.json", "{") and c.argv("--resume", c.tmp / "step_0000001"), 1,
                                         "step_0000001: state.json is unreadable (JSONDecodeError"),
    # cases already handled
    "--data missing": (lambda c: c.argv(drop=("--data",)), 2, "the following arguments are required: --data"),
    "--models missing flag": (lambda c: c.argv(drop=("--models",)), 2, "the following arguments are required: --models"),
    "--out missing": (lambda c: c.argv(drop=("--out",)), 2, "the following arguments are required: --out"),
    "--data not a training set": (lambda c: c.argv("--data", c.folder("videos")), 1, "videos: no dataset.json; make a training set with"),
    "--stage 3": (lambda c: c.argv("--stage", "3"), 2, "argument --stage: invalid choice: 3"),
    "--mixed-precision fp8": (lambda c: c.argv("--mixed-precision", "fp8"), 2, "argument --mixed-precision: invalid choice: 'fp8'"),
    "--optimizer lion": (lambda c: c.argv("--optimizer", "lion"), 2, "argument --optimizer: invalid choice: 'lion'"),
    "unknown flag": (lambda c: c.argv("--epochs", "3"), 2, "unrecognized arguments: --epochs 3"),
    "--lr-scale unknown group": (lambda c: c.argv("--lr-scale", "bogus=1"), 2, "GROUP=FACTOR with GROUP in aa2, temporal, all"),
    "--frames longer than every clip": (lambda c: c.argv("--frames", "50"), 1, "no clip has the 50 frames"),
    # the `train` extra
    "accelerate not installed": (not_importable("accelerate", "accelerate.utils"), 1, "train needs accelerate, which does not import here"),
    "tensorboard not installed": (not_importable("tensorboard", "tensorboardX"), 1,
                                  "TensorBoard logs (the default) need tensorboard, which is not installed; pip install tensorboard, or pass --no-tensorboard"),
}
try:
    import bitsandbytes  # noqa: F401
except ImportError:
    ROWS["--optimizer adamw8bit without bitsandbytes"] = (lambda c: c.argv("--optimizer", "adamw8bit"), 1,
                                                          "--optimizer adamw8bit needs bitsandbytes, which does not import here")


@pytest.mark.parametrize("build, code, fragment", ROWS.values(), ids=ROWS.keys())
def test_bad_train_input_gives_one_clear_line(build, code, fragment, tmp_path, data_dir, models_dir, monkeypatch, capsys):
    def no_models(*_):
        raise AssertionError("models were loaded: the error came too late")

    monkeypatch.setattr(engine, "load_models", no_models)
    argv = build(Case(tmp_path, data_dir, models_dir, monkeypatch))
    capsys.readouterr()
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse
        rc = e.code
    out = capsys.readouterr()
    text = out.out + out.err
    assert rc == code, text
    assert "Traceback" not in text and "[Errno" not in text, text
    assert len(text.strip().splitlines()) == 1 and fragment in text, text  # one line, no usage block
    assert not (tmp_path / "marker").exists() and not (tmp_path / "out.safetensors").is_file()


@pytest.mark.parametrize("row", ["--batch-size 0", "--out an existing folder"])
def test_the_real_command_prints_no_traceback(row, tmp_path, data_dir, models_dir):
    """The same through ``python -m aa2_core`` in its own process: the exit code and the line, on stderr."""
    build, code, fragment = ROWS[row]
    run = subprocess.run([PYTHON, "-m", "aa2_core", *map(str, build(Case(tmp_path, data_dir, models_dir)))], env=subprocess_env(),
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == code and fragment in run.stderr, (run.returncode, run.stdout, run.stderr)
    assert "Traceback" not in run.stdout + run.stderr
