"""Every writer of a user's file leaves the previous file whole when it is interrupted part-way, and leaves no
partial file behind (neither under the final name nor as a temporary one)."""

import json
import os

import av
import pytest
import torch

from aa2_core import evaluate, video_io
from aa2_core.checkpoints import convert, io as checkpoint_io
from aa2_core.video_io import write_video


def only(folder, name):
    assert sorted(os.listdir(folder)) == [name], os.listdir(folder)


class CutContainer:
    """A real PyAV output container that raises once its file holds bytes and some packets went in."""

    def __init__(self, container, path, error):
        self.container, self.path, self.error, self.packets, self.partial = container, path, error, 0, 0

    def __getattr__(self, name):
        return getattr(self.container, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self.container.__exit__(*exc)

    def mux(self, packets):
        self.container.mux(packets)
        self.packets += len(packets)
        if self.packets >= 5 and os.path.exists(self.path) and os.path.getsize(self.path) > 0:
            self.partial = os.path.getsize(self.path)
            raise self.error


@pytest.mark.parametrize("error", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_an_interrupted_video_keeps_the_previous_one(tmp_path, monkeypatch, error):
    folder = tmp_path / "videos"
    out = folder / "out.mp4"
    write_video(str(out), torch.rand(6, 32, 32, 3), 8)
    before = out.read_bytes()
    opened = []

    class CuttingAv:  # PyAV, except that the output container is cut
        def __getattr__(self, name):
            return getattr(av, name)

        def open(self, path, mode="r", **kwargs):
            container = av.open(path, mode, **kwargs)
            if mode != "w":
                return container
            opened.append(CutContainer(container, path, error))
            return opened[-1]

    monkeypatch.setattr(video_io, "_av", CuttingAv)
    with pytest.raises(type(error)):
        write_video(str(out), torch.rand(40, 32, 32, 3), 8)
    assert opened and opened[0].partial > 0  # the interruption came after bytes were written
    assert out.read_bytes() == before
    only(folder, "out.mp4")


def test_an_interrupted_convert_keeps_the_previous_safetensors(tmp_path, monkeypatch, capsys):
    src = tmp_path / "weights.pth"
    torch.save({"w": torch.arange(1000.0)}, src)
    out_dir = tmp_path / "out"
    assert convert.main([str(src), "--out-dir", str(out_dir)]) == 0
    dst = out_dir / "weights.safetensors"
    before = dst.read_bytes()
    torch.save({"w": torch.zeros(4000)}, src)  # new content, so a half-written file would differ
    real = checkpoint_io.save_file
    written = []

    def save_half_then_fail(tensors, path, metadata=None):
        real(tensors, path, metadata=metadata)
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) // 2)
        written.append(os.path.getsize(path))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint_io, "save_file", save_half_then_fail)
    assert convert.main([str(src), "--out-dir", str(out_dir)]) == 1
    assert "No space left on device" in capsys.readouterr().out
    assert written and written[0] > 0
    assert dst.read_bytes() == before
    only(out_dir, "weights.safetensors")


def test_an_interrupted_evaluate_json_keeps_the_previous_file(tmp_path, monkeypatch, capsys):
    for side in ("gen", "truth"):
        (tmp_path / side).mkdir()
        write_video(str(tmp_path / side / "a.mp4"), torch.rand(2, 32, 32, 3), 8)
    folder = tmp_path / "scores"
    folder.mkdir()
    scores = folder / "scores.json"
    scores.write_text('{"previous": "run"}')
    real = json.dumps

    def dump_part_then_stop(obj, f, **kwargs):
        f.write(real(obj, **kwargs)[:40])
        f.flush()
        raise KeyboardInterrupt

    monkeypatch.setattr(evaluate.json, "dump", dump_part_then_stop)
    with pytest.raises(KeyboardInterrupt):
        evaluate.main([str(tmp_path / "gen"), str(tmp_path / "truth"), "--json", str(scores)])
    assert scores.read_text() == '{"previous": "run"}'
    only(folder, "scores.json")
    monkeypatch.undo()
    assert evaluate.main([str(tmp_path / "gen"), str(tmp_path / "truth"), "--json", str(scores)]) == 0
    assert json.loads(scores.read_text())["videos"] == 1  # and an uninterrupted run replaces it
    only(folder, "scores.json")


def test_written_files_get_the_usual_permissions(tmp_path):
    """safetensors makes owner-only files; the atomic rename gives them what a plain open() would (the umask),
    so a ComfyUI server running as another user can read a trained file."""
    import os

    import torch

    from aa2_core.checkpoints.io import write_safetensors

    path = tmp_path / "modules.safetensors"
    write_safetensors({"a": torch.ones(2)}, str(path))
    mask = os.umask(0)
    os.umask(mask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~mask
