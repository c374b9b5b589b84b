"""Issue 16, the trainer's files: resume runs no code from the run folder, a damaged newest checkpoint falls back
to the previous complete one, checkpoints and --out are written whole, resuming at --steps writes nothing.

A base run (3 steps, a checkpoint after each) is trained once; each test works on its own copy of its run
folder. A resume from a fallback checkpoint must give the losses of an uninterrupted run."""

import io
import json
import os
import pickle
import re
import shutil
from contextlib import redirect_stderr, redirect_stdout

import pytest
import torch

from aa2_core.__main__ import main
from aa2_core.errors import AA2Error
from aa2_core.training import engine

from training_helpers import data_dir, models_dir, one_thread, train_args  # noqa: F401

COMMON = ("--frames", 2, "--lr", 1e-2, "--warmup-steps", 3, "--optimizer", "adamw")


def run(argv) -> tuple[int, str]:
    out = io.StringIO()
    with redirect_stdout(out), redirect_stderr(out):
        code = main(argv)
    return code, out.getvalue()


def losses(log: str) -> list[float]:
    return [float(v) for v in re.findall(r"^step \d+/\d+ loss (\S+)", log, flags=re.M)]


@pytest.fixture(scope="module")
def base(tmp_path_factory, models_dir, data_dir, one_thread):
    """The base run's folder (checkpoints after steps 1, 2, 3) and the losses of an uninterrupted 4-step run."""
    tmp = tmp_path_factory.mktemp("base")
    code, log = run(train_args(data_dir, models_dir, tmp / "full.safetensors", "--steps", 4, *COMMON))
    assert code == 0, log
    full = losses(log)
    code, log = run(train_args(data_dir, models_dir, tmp / "base.safetensors", "--steps", 3, *COMMON, "--checkpoint-every", 1))
    assert code == 0 and losses(log) == full[:3], log
    return tmp / "base_run", full


@pytest.fixture
def run_dir(base, tmp_path):
    """A fresh copy of the base run folder."""
    shutil.copytree(base[0], tmp_path / "run")
    return tmp_path / "run"


def step_dir(run_dir, step):
    return run_dir / "checkpoints" / f"step_{step:07d}"


def resume(run_dir, data_dir, models_dir, steps=4, out="resumed.safetensors"):
    return run(train_args(data_dir, models_dir, run_dir.parent / out, "--steps", steps, "--resume", run_dir, *COMMON))


def models_must_not_load(monkeypatch):
    def refuse(*_):
        raise AssertionError("models were loaded")
    monkeypatch.setattr(engine, "load_models", refuse)


class RunsCode:
    """Unpickling this runs a shell command that leaves a marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


# ---------------------------------------------------------------------------------------------- no code runs

@pytest.mark.parametrize("where", ["step_0000003/custom_checkpoint_1.pkl", "step_0000003/random_states_0.pkl",
                                   "step_0000004/custom_checkpoint_0.pkl"],  # the last: an accelerate-style checkpoint
                         ids=["custom_checkpoint", "random_states", "old-style folder"])
def test_resume_refuses_a_code_running_pickle(where, run_dir, data_dir, models_dir, monkeypatch):
    """A pickle in the checkpoint that resume picks is refused with an error naming it, before any model loads;
    the code in it never runs (accelerate's load_state unpickled custom_checkpoint_*.pkl with weights_only=False).

    Mutation seen failing: the *.pkl refusal in checkpoint_state removed (rc 0, resumed)."""
    marker = run_dir.parent / "marker"
    path = run_dir / "checkpoints" / where
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(pickle.dumps(RunsCode(marker)))
    models_must_not_load(monkeypatch)
    code, log = resume(run_dir, data_dir, models_dir)
    assert code == 1, log
    assert f"--resume: refusing {path}: a pickle can run code" in log and "Traceback" not in log, log
    assert not marker.exists()


def test_a_code_running_optimizer_file_is_not_run(run_dir, data_dir, models_dir):
    """optimizer.pt replaced by a torch.save file holding a code-running object (state.json updated to match):
    read with weights_only=True, so resume stops with an error naming the file and the code never runs.

    Mutation seen failing: ``weights_only=False`` in TrainingState.load (the marker file appeared)."""
    marker = run_dir.parent / "marker"
    ckpt = step_dir(run_dir, 3)
    torch.save({"state": RunsCode(marker)}, ckpt / "optimizer.pt")
    state = json.loads((ckpt / "state.json").read_text())
    state["files"]["optimizer.pt"] = os.path.getsize(ckpt / "optimizer.pt")
    (ckpt / "state.json").write_text(json.dumps(state))
    code, log = resume(run_dir, data_dir, models_dir)
    assert code == 1 and f"--resume {ckpt}: cannot read optimizer.pt (UnpicklingError" in log, log
    assert "Traceback" not in log and not marker.exists()


def test_sharded_loads_are_weights_only(tmp_path):
    """DeepSpeed / FSDP checkpoints go through accelerate's load_state: inside ``weights_only_loads`` even a
    ``torch.load(weights_only=False)`` (as DeepSpeed calls it) refuses a code-running object.

    Mutation seen failing: the context manager not setting TORCH_FORCE_WEIGHTS_ONLY_LOAD (the marker appeared)."""
    marker = tmp_path / "marker"
    torch.save({"x": RunsCode(marker)}, tmp_path / "evil.pt")
    with engine.weights_only_loads():
        with pytest.raises(pickle.UnpicklingError):
            torch.load(tmp_path / "evil.pt", weights_only=False)
    assert not marker.exists() and "TORCH_FORCE_WEIGHTS_ONLY_LOAD" not in os.environ


def test_fsdp_checkpoint_index_is_checked_before_torch_unpickles_it(tmp_path):
    """FSDP's sharded state goes through torch.distributed.checkpoint, whose ``.metadata`` torch reads with plain
    pickle.load. A real one passes the check; a code-running one is refused by checkpoint_state, naming it.

    Mutation seen failing: ``_MetadataCheck.find_class`` returning any global (the marker appeared)."""
    import torch.distributed.checkpoint as dcp

    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    dcp.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, checkpoint_id=str(tmp_path / "real"))
    assert engine.dcp_metadata_problem(str(tmp_path / "real" / ".metadata")) is None

    marker = tmp_path / "marker"
    ckpt = tmp_path / "step_0000001"
    (ckpt / "pytorch_model_fsdp_0").mkdir(parents=True)
    (ckpt / "pytorch_model_fsdp_0" / ".metadata").write_bytes(pickle.dumps(RunsCode(marker)))
    (ckpt / "rng.safetensors").write_bytes(b"x")
    files = {n: os.path.getsize(ckpt / n) for n in ("pytorch_model_fsdp_0/.metadata", "rng.safetensors")}
    (ckpt / "state.json").write_text(json.dumps({"sharded": True, "progress": {"step": 1, "micro": 1, "skipped": 0},
                                                 "lr_schedule": {}, "files": files}))
    with pytest.raises(AA2Error, match=r"refusing .*pytorch_model_fsdp_0/\.metadata: UnpicklingError: it names posix\.system"):
        engine.checkpoint_state(str(ckpt), sharded=True)
    assert not marker.exists()


# ---------------------------------------------------------------------------------- damaged newest checkpoint

def test_a_cut_or_missing_shard_of_a_sharded_checkpoint_is_found(tmp_path):
    """DeepSpeed / FSDP shards are accelerate's files of any format: state.json's sizes are what finds a cut one.

    Mutation seen failing: the size check in checkpoint_state removed (the cut shard passed)."""
    ckpt = tmp_path / "step_0000001"
    (ckpt / "pytorch_model").mkdir(parents=True)
    (ckpt / "pytorch_model" / "mp_rank_00_model_states.pt").write_bytes(b"x" * 100)
    engine.write_safetensors({"0.torch": torch.get_rng_state()}, str(ckpt / "rng.safetensors"))
    files = {n: os.path.getsize(ckpt / n) for n in ("pytorch_model/mp_rank_00_model_states.pt", "rng.safetensors")}
    (ckpt / "state.json").write_text(json.dumps({"sharded": True, "progress": {"step": 1, "micro": 1, "skipped": 0},
                                                 "lr_schedule": {}, "files": files}))
    assert isinstance(engine.checkpoint_state(str(ckpt), sharded=True), dict)
    (ckpt / "pytorch_model" / "mp_rank_00_model_states.pt").write_bytes(b"x" * 60)
    assert engine.checkpoint_state(str(ckpt), sharded=True) == \
        "pytorch_model/mp_rank_00_model_states.pt is 60 bytes; 100 were written (cut short or changed)"
    os.remove(ckpt / "pytorch_model" / "mp_rank_00_model_states.pt")
    assert engine.checkpoint_state(str(ckpt), sharded=True) == "pytorch_model/mp_rank_00_model_states.pt is missing"


def cut(name):
    def damage(ckpt):
        data = (ckpt / name).read_bytes()
        (ckpt / name).write_bytes(data[: len(data) // 2])
    return damage


def garbled(name):
    """Same size, first bytes overwritten: state.json's size check passes, the format check must not."""
    def damage(ckpt):
        data = (ckpt / name).read_bytes()
        (ckpt / name).write_bytes(b"\xff" * 16 + data[16:])
    return damage


def emptied(ckpt):
    for f in ckpt.iterdir():
        f.unlink()


CUT = r"is \d+ bytes; \d+ were written \(cut short or changed\)"
DAMAGE = {  # (damage, the reason logged: a regular expression)
    "trained.safetensors truncated": (cut("trained.safetensors"), "trained.safetensors " + CUT),
    "empty step folder": (emptied, r"no state.json \(an empty or unfinished checkpoint\)"),
    "optimizer.pt cut": (cut("optimizer.pt"), "optimizer.pt " + CUT),
    "trained.safetensors header garbled": (garbled("trained.safetensors"), "trained.safetensors is not readable safetensors"),
    "optimizer.pt garbled": (garbled("optimizer.pt"), r"optimizer.pt is not a whole torch.save file \(.*CRC"),
    "state.json cut": (cut("state.json"), "state.json is unreadable"),
}


@pytest.mark.parametrize("damage, reason", DAMAGE.values(), ids=DAMAGE.keys())
def test_a_damaged_newest_checkpoint_falls_back_to_the_previous_one(damage, reason, base, run_dir, data_dir, models_dir):
    """The newest checkpoint (step 3) damaged: resume says it skipped it and why, continues from step 2, and
    steps 3 and 4 have the losses of the uninterrupted run.

    Mutations seen failing: find_checkpoint raising at the first damaged checkpoint instead of skipping it (rc 1);
    the size check in checkpoint_state removed (the truncated files crash the load); the safetensors header /
    zip check removed (the garbled files crash the load)."""
    damage(step_dir(run_dir, 3))
    code, log = resume(run_dir, data_dir, models_dir)
    assert code == 0, log
    assert re.search(re.escape(f"--resume: skipped {step_dir(run_dir, 3)}: ") + reason, log), log
    assert f"resumed from {step_dir(run_dir, 2)} at step 2" in log, log
    assert losses(log) == base[1][2:], (losses(log), base[1])


def test_no_complete_checkpoint_is_one_clear_error(run_dir, data_dir, models_dir, monkeypatch):
    """Every checkpoint damaged: one error listing each one and why, before any model loads."""
    for step in (1, 2, 3):
        emptied(step_dir(run_dir, step))
    models_must_not_load(monkeypatch)
    code, log = resume(run_dir, data_dir, models_dir)
    assert code == 1 and "Traceback" not in log, log
    assert f"error: --resume {run_dir}: no complete checkpoint in {run_dir / 'checkpoints'} (skipped step_0000003: no state.json" in log, log


def test_resuming_at_the_last_step_warns_and_writes_nothing(run_dir, data_dir, models_dir, monkeypatch):
    """--steps is the total: resuming a step-3 checkpoint with --steps 3 warns, writes no --out, loads no model.

    Mutation seen failing: the step check in engine.train removed (models load: AssertionError)."""
    models_must_not_load(monkeypatch)
    code, log = resume(run_dir, data_dir, models_dir, steps=3)
    assert code == 0, log
    assert "warning: " in log and "is at step 3, and --steps 3 is the total, not more steps: nothing to train" in log, log
    assert not (run_dir.parent / "resumed.safetensors").exists()


# ------------------------------------------------------------------------------------------- written whole

def test_an_interrupted_checkpoint_leaves_the_older_ones_whole(tmp_path, data_dir, models_dir, one_thread, monkeypatch):
    """The disk fills while step 2's optimizer state is written (half the bytes, then ENOSPC): one clear error,
    no step_0000002 folder and no temporary leftovers; step 1 is intact and resumable.

    Mutation seen failing: TrainingState.save writing into the final folder instead of atomic_dir's temporary
    one (a step_0000002 folder without state.json was left)."""
    real_save = torch.save
    calls = []

    def save_then_fail(obj, path, *a, **k):
        calls.append(path)
        if len(calls) == 2:
            with open(path, "wb") as f:
                f.write(b"PK\x03\x04 half")
            raise OSError(28, "No space left on device")
        return real_save(obj, path, *a, **k)

    monkeypatch.setattr(torch, "save", save_then_fail)
    code, log = run(train_args(data_dir, models_dir, tmp_path / "x.safetensors", "--steps", 3, *COMMON, "--checkpoint-every", 1))
    monkeypatch.undo()
    checkpoints = tmp_path / "x_run" / "checkpoints"
    assert code == 1 and "Traceback" not in log and "[Errno" not in log, log
    assert f"error: checkpoint {checkpoints / 'step_0000002'}: could not write it (No space left on device)" in log, log
    assert sorted(os.listdir(checkpoints)) == ["step_0000001"]
    assert not (tmp_path / "x.safetensors").exists()
    code, log = run(train_args(data_dir, models_dir, tmp_path / "y.safetensors", "--steps", 2, "--resume", tmp_path / "x_run", *COMMON))
    assert code == 0 and "at step 1" in log, log


def test_an_interrupted_out_write_keeps_the_previous_file(tmp_path, data_dir, models_dir, one_thread, monkeypatch):
    """--out already holds a file; the disk fills half-way through writing the new one: one clear error, the old
    file unchanged byte for byte, no partial file left in the folder.

    Mutation seen failing: io.atomic_path replaced by a pass-through (the old file was half overwritten)."""
    from aa2_core.checkpoints import io as weights_io

    out = tmp_path / "aa2.safetensors"
    out.write_bytes(b"previous weights")

    def save_half_then_fail(tensors, path, metadata=None):
        with open(path, "wb") as f:
            f.write(b"{half a file")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(weights_io, "save_file", save_half_then_fail)
    code, log = run(train_args(data_dir, models_dir, out, "--steps", 1, *COMMON))
    assert code == 1 and "Traceback" not in log and "[Errno" not in log, log
    assert f"error: --out {out}: could not write it (No space left on device); a file already there is unchanged" in log, log
    assert out.read_bytes() == b"previous weights"
    assert [n for n in os.listdir(tmp_path) if n != "aa2_run"] == ["aa2.safetensors"]  # no partial file beside it


def test_a_two_process_checkpoint_is_whole_and_resumes(tmp_path, data_dir, models_dir, one_thread):
    """Two CPU processes (gloo DDP) train 3 steps and write a checkpoint at step 2 through the gather/broadcast
    path (the main process writes every file, each process's RNG included). One process with their batch
    resumes it: its step 3 has the two-process run's step-3 loss (the same clips, 1x2 = 2x1, see
    test_training_accelerate), so the trained weights and the data position came back whole. (The optimizer state
    is each process's same copy; test_training.py's resume test checks it.)

    Mutation seen failing: the trained weights not copied back in TrainingState.load."""
    import subprocess

    from training_helpers import PYTHON, subprocess_env

    launcher = shutil.which("accelerate", path=str(__import__("pathlib").Path(PYTHON).parent))
    args = train_args(data_dir, models_dir, tmp_path / "two.safetensors", "--steps", 3, "--checkpoint-every", 2, "--batch-size", 1, *COMMON)
    two = subprocess.run([launcher, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
                          "--dynamo_backend", "no", "-m", "aa2_core", *map(str, args)], env=subprocess_env(), capture_output=True,
                         text=True, timeout=400, cwd=tmp_path)
    assert two.returncode == 0 and "2 process(es) x batch 1" in two.stdout, two.stderr[-3000:]
    ckpt = step_dir(tmp_path / "two_run", 2)
    assert sorted(os.listdir(ckpt)) == ["optimizer.pt", "rng.safetensors", "state.json", "trained.safetensors"]
    assert set(engine.load_file(str(ckpt / "rng.safetensors"))) == {"0.torch", "1.torch"}

    code, resumed = run(train_args(data_dir, models_dir, tmp_path / "resumed.safetensors", "--steps", 3, "--batch-size", 2,
                                   "--resume", tmp_path / "two_run", *COMMON))
    assert code == 0 and "at step 2" in resumed, resumed
    assert losses(resumed)[0] == pytest.approx(losses(two.stdout)[2], rel=1e-5), (losses(two.stdout), losses(resumed))
