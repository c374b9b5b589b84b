"""``python -m aa2_core download`` against a fake Hugging Face Hub on 127.0.0.1 (tests/fake_hub.py), no internet.

The hub holds tiny files in the released layouts at the manifest's real repositories, paths and revisions
(Moore's four ``.pth`` pickles, the diffusers VAE, the sd-image-variations ``image_encoder/pytorch_model.bin``
with its ``config.json``, ...). The command runs in a subprocess with ``HF_ENDPOINT`` pointing at it, ``HF_HOME``
in tmp and ``HF_HUB_OFFLINE`` unset, and a manifest override (``--manifest``) carrying the tiny files' sha256
where the real manifest pins one. Covered: a full download that ends with ``check``, a second run that makes
no request, a transfer broken mid-body resumed in the same run, a partial download resumed by the next run,
corrupted bytes refused (against the manifest and against the hub's sha256), a wrong manifest hash refused, a
present file that differs kept and named (and replaced with --force), the released pickle saved under the
``.safetensors`` name converted in place, the token sent, the missing-file messages naming the command, and
nothing fetched by the pack at run time.
"""

import hashlib
import io
import json
import os
import subprocess
import sys

import pytest
import torch

from fake_hub import FakeHub

from aa2_core import model_manifest as mm
from aa2_core.model_files import locate_models

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKEN = "hf_fake_token_for_tests"


def pickled(state) -> bytes:
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory):
    """{manifest key: bytes} for the Moore set and the Animate-X set, plus the image encoder's config.json."""
    from safetensors.torch import save as save_bytes

    from aa2_core.tiny import TINY_CLIP_CONFIG, tiny_clip_vision, tiny_vae, write_tiny_moore_files

    folder = tmp_path_factory.mktemp("tiny_release")
    paths = write_tiny_moore_files(str(folder))
    files = {f"moore-{name.replace('_', '-')}": open(p, "rb").read() for name, p in paths.items()}
    files["sd-vae-ft-mse"] = save_bytes({k: v.contiguous() for k, v in tiny_vae().state_dict().items()})
    files["image-encoder"] = pickled(tiny_clip_vision().state_dict())
    files["image-encoder-config"] = json.dumps({"architectures": ["CLIPVisionModelWithProjection"], **TINY_CLIP_CONFIG}).encode()
    for entry in mm.MANIFEST:  # the rest: stand-in bytes (only their hashes and places are checked; JSON reads)
        stand_in = json.dumps({"stand_in": entry.key}).encode() if entry.name.endswith(".json") else \
            hashlib.sha256(entry.key.encode()).digest() * 64
        files.setdefault(entry.key, stand_in)
    return files


def make_hub(tiny_files, **options) -> FakeHub:
    """Every manifest file at its repository, revision and path; options: {key: HubFile options}."""
    hub = FakeHub()
    for entry in mm.MANIFEST:
        non_lfs = entry.name.endswith(".json")
        hub.add(entry.repo_id, entry.revision, entry.path, tiny_files[entry.key], lfs=not non_lfs, **options.get(entry.key, {}))
        for companion in entry.companions:
            hub.add(entry.repo_id, entry.revision, companion, tiny_files[f"{entry.key}-config"], lfs=False)
    return hub.start()


@pytest.fixture
def hub(tiny_files):
    hub = make_hub(tiny_files)
    yield hub
    hub.stop()


def manifest_file(tiny_files, tmp_path, overrides=None):
    """The real manifest with the tiny files' sha256 where it pins one (None stays None: the hub's is used)."""
    hashes = {e.key: hashlib.sha256(tiny_files[e.key]).hexdigest() for e in mm.MANIFEST if e.sha256}
    manifest = mm.with_sha256(mm.MANIFEST, {**hashes, **(overrides or {})})
    path = tmp_path / "manifest.json"
    path.write_text(mm.to_json(manifest))
    return str(path)


def run(hub, models, *args, manifest=None, env=None, timeout=300):
    environment = {k: v for k, v in os.environ.items()
                   if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN", "HTTP_PROXY", "HTTPS_PROXY",
                                "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy")}
    environment.update(HF_ENDPOINT=hub.url, HF_HOME=str(models.parent / "hf_home"), NO_PROXY="127.0.0.1,localhost",
                       PYTHONPATH=ROOT, **(env or {}))
    cmd = [sys.executable, "-m", "aa2_core", "download", "--models", str(models), *args]
    if manifest:
        cmd += ["--manifest", manifest]
    done = subprocess.run(cmd, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=timeout)
    return done.returncode, done.stdout + done.stderr


def models_dir(tmp_path, name="models"):
    path = tmp_path / name
    path.mkdir()
    return path


def leftovers(models):
    """Partial files anywhere under the models folder (the staging folder's resumable parts excepted)."""
    return [os.path.join(d, f) for d, _, names in os.walk(models) for f in names
            if (f.endswith((".partial", ".incomplete")) or ".partial." in f) and mm_staging(models) not in d]


def mm_staging(models):
    from aa2_core.download import STAGING

    return os.path.join(str(models), STAGING)


# ---- the full download, then a second run ------------------------------------------------------------

@pytest.fixture(scope="module")
def full(tiny_files, tmp_path_factory):
    """One full `--set moore` run (ending with check) with a token set; then a second run on the same folder."""
    tmp = tmp_path_factory.mktemp("full")
    hub = make_hub(tiny_files)
    try:
        models = models_dir(tmp)
        manifest = manifest_file(tiny_files, tmp)
        first = run(hub, models, manifest=manifest, env={"HF_TOKEN": TOKEN})
        first_log = list(hub.log)
        hub.log.clear()
        second = run(hub, models, manifest=manifest)
        yield dict(models=models, first=first, first_log=first_log, second=second, second_log=list(hub.log))
    finally:
        hub.stop()


def test_full_download_puts_every_moore_file_where_the_loaders_look_and_check_passes(full, tiny_files):
    code, out = full["first"]
    assert code == 0, out
    models = full["models"]
    for entry in mm.select("moore"):
        path = models.joinpath(*entry.target.split("/"))
        assert path.is_file(), f"{entry.target} missing:\n{out}"
        if not entry.convert:
            assert path.read_bytes() == tiny_files[entry.key], entry.target  # the released bytes, unchanged
    found, missing = locate_models(str(models))
    assert not missing and len(found) == 6
    assert "6 fetched, 0 converted, 0 already present, 0 refused" in out
    assert "output_shape: (1, 4, 4, 8, 8)" in out, out  # check ran on the downloaded files
    assert not leftovers(models)
    gets = [r for r in full["first_log"] if r.method == "GET" and "/resolve/" in r.path]
    assert len(gets) == 7, gets  # six files and the image encoder's config.json, once each


def test_the_image_encoder_pickle_becomes_the_safetensors_the_workflows_name(full, tiny_files):
    from safetensors.torch import load_file, safe_open

    path = full["models"] / "clip_vision" / "image_encoder.safetensors"
    released = torch.load(io.BytesIO(tiny_files["image-encoder"]), weights_only=True)
    converted = load_file(str(path))
    assert converted.keys() == released.keys() and all(torch.equal(converted[k], released[k]) for k in released)
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    assert meta["aa2_source_sha256"] == hashlib.sha256(tiny_files["image-encoder"]).hexdigest()
    assert meta["num_attention_heads"] == "1"  # from image_encoder/config.json: the tiny width does not tell it


def test_the_token_and_the_endpoint_are_used(full):
    files = [r for r in full["first_log"] if "/resolve/" in r.path]
    assert files, "nothing reached the fake hub: HF_ENDPOINT was not used"
    assert all(r.authorization == f"Bearer {TOKEN}" for r in files), files


def test_a_second_run_downloads_nothing(full):
    code, out = full["second"]
    assert code == 0, out
    assert full["second_log"] == [], full["second_log"]  # not one request: the files were verified and recorded
    assert "0 fetched, 0 converted, 6 already present, 0 refused" in out


def test_a_present_file_without_a_record_is_hashed_not_fetched(tiny_files, hub, tmp_path):
    models = models_dir(tmp_path)
    target = models / "animate_anyone2" / "pose_guider.pth"
    target.parent.mkdir()
    target.write_bytes(tiny_files["moore-pose-guider"])  # put there by hand: no record, no manifest sha256
    code, out = run(hub, models, "--no-check", manifest=manifest_file(tiny_files, tmp_path))
    assert code == 0, out
    assert not hub.gets("pose_guider"), "a present, matching file was downloaded again"
    assert "present animate_anyone2/pose_guider.pth" in out


# ---- resuming ------------------------------------------------------------------------------------------

def resume_point(file_size):
    """Where a transfer broken after ``file_size - 1`` bytes resumes: huggingface_hub writes whole chunks."""
    from huggingface_hub import constants

    chunk = constants.DOWNLOAD_CHUNK_SIZE
    assert file_size > chunk + 1, "the tiny file must span more than one download chunk"
    return chunk, file_size - 1


def test_a_transfer_broken_mid_file_resumes_where_it_stopped(tiny_files, tmp_path):
    resume, cut = resume_point(len(tiny_files["moore-denoising-unet"]))
    hub = make_hub(tiny_files, **{"moore-denoising-unet": dict(cut_after=cut, cuts=1)})
    try:
        models = models_dir(tmp_path)
        code, out = run(hub, models, "--no-check", manifest=manifest_file(tiny_files, tmp_path))
        gets = hub.gets("denoising_unet.pth")
    finally:
        hub.stop()
    assert code == 0, out
    assert [g.range for g in gets] == [None, f"bytes={resume}-"], gets  # the second GET asks only for the rest
    assert (models / "animate_anyone2" / "denoising_unet.pth").read_bytes() == tiny_files["moore-denoising-unet"]


def test_a_download_that_failed_is_resumed_by_the_next_run(tiny_files, tmp_path):
    resume, cut = resume_point(len(tiny_files["moore-denoising-unet"]))
    # the transfer breaks off, then the hub answers 503 to every retry of this run
    hub = make_hub(tiny_files, **{"moore-denoising-unet": dict(cut_after=cut, cuts=1, unavailable=10)})
    try:
        models = models_dir(tmp_path)
        manifest = manifest_file(tiny_files, tmp_path)
        code, out = run(hub, models, "--no-check", manifest=manifest)
        assert code == 1, out
        assert f"download of patrolli/AnimateAnyone@{mm.PATROLLI[:12]}:denoising_unet.pth stopped after {resume} bytes" in out
        assert "run the command again to resume" in out
        assert not (models / "animate_anyone2" / "denoising_unet.pth").exists()
        hub.files[("patrolli/AnimateAnyone", mm.PATROLLI, "denoising_unet.pth")].unavailable = 0  # the hub is back
        hub.log.clear()
        code, out = run(hub, models, "--no-check", manifest=manifest)
        gets = hub.gets("denoising_unet.pth")
    finally:
        hub.stop()
    assert code == 0, out
    assert f"resume  animate_anyone2/denoising_unet.pth from byte {resume}" in out
    assert [g.range for g in gets] == [f"bytes={resume}-"], gets  # only the rest is fetched
    assert (models / "animate_anyone2" / "denoising_unet.pth").read_bytes() == tiny_files["moore-denoising-unet"]
    assert not [f for f in os.listdir(mm_staging(models)) if ".incomplete" in f]


# ---- refusals ------------------------------------------------------------------------------------------

def test_corrupted_bytes_are_refused_and_named(tiny_files, tmp_path):
    # denoising_unet: the manifest pins its sha256; reference_unet: only the hub's sha256 checks it
    hub = make_hub(tiny_files, **{"moore-denoising-unet": dict(corrupt=True), "moore-reference-unet": dict(corrupt=True)})
    try:
        models = models_dir(tmp_path)
        code, out = run(hub, models, "--no-check", manifest=manifest_file(tiny_files, tmp_path))
    finally:
        hub.stop()
    assert code == 1, out
    for key, name, where in (("moore-denoising-unet", "denoising_unet.pth", "the manifest"),
                             ("moore-reference-unet", "reference_unet.pth", "the sha256 the hub reports for it")):
        expected = hashlib.sha256(tiny_files[key]).hexdigest()
        line = next(l for l in out.splitlines() if l.startswith(f"REFUSED animate_anyone2/{name}"))
        assert f"refused patrolli/AnimateAnyone@{mm.PATROLLI[:12]}:{name}" in line and f"expected {expected} ({where})" in line
        assert f"{os.path.join(str(models), 'animate_anyone2', name)} was not written" in line
        assert not (models / "animate_anyone2" / name).exists()
    assert (models / "animate_anyone2" / "pose_guider.pth").is_file()  # the others still arrive
    assert "4 fetched, 0 converted, 0 already present, 2 refused" in out
    assert not leftovers(models) and not [f for f in os.listdir(mm_staging(models)) if ".incomplete" in f]


def test_bytes_that_do_not_match_the_manifest_hash_are_refused(tiny_files, tmp_path):
    """The hub states no sha256 for the VAE here (served as a plain git file), so only the manifest's hash
    stands between the bytes and the models folder; the manifest is given a wrong one."""
    hub = FakeHub()
    for entry in mm.select("moore"):
        hub.add(entry.repo_id, entry.revision, entry.path, tiny_files[entry.key], lfs=entry.key != "sd-vae-ft-mse")
        for companion in entry.companions:
            hub.add(entry.repo_id, entry.revision, companion, tiny_files[f"{entry.key}-config"], lfs=False)
    hub.start()
    wrong = hashlib.sha256(b"some other file").hexdigest()
    try:
        models = models_dir(tmp_path)
        code, out = run(hub, models, "--no-check", manifest=manifest_file(tiny_files, tmp_path, {"sd-vae-ft-mse": wrong}))
    finally:
        hub.stop()
    assert code == 1, out
    actual = hashlib.sha256(tiny_files["sd-vae-ft-mse"]).hexdigest()
    assert (f"REFUSED vae/sd-vae-ft-mse.safetensors: refused stabilityai/sd-vae-ft-mse@{mm.SD_VAE[:12]}:"
            f"diffusion_pytorch_model.safetensors: the downloaded bytes have sha256 {actual}, expected {wrong} (the manifest)") in out
    assert not (models / "vae" / "sd-vae-ft-mse.safetensors").exists()


def test_a_manifest_hash_the_hub_contradicts_is_refused_before_downloading(tiny_files, hub, tmp_path):
    wrong = hashlib.sha256(b"some other file").hexdigest()
    models = models_dir(tmp_path)
    code, out = run(hub, models, "--no-check", manifest=manifest_file(tiny_files, tmp_path, {"moore-denoising-unet": wrong}))
    assert code == 1, out
    hub_sha = hashlib.sha256(tiny_files["moore-denoising-unet"]).hexdigest()
    assert f"the hub reports sha256 {hub_sha}, the manifest expects {wrong}; nothing was downloaded" in out
    assert not hub.gets("denoising_unet.pth")
    assert not (models / "animate_anyone2" / "denoising_unet.pth").exists()


def test_a_present_file_that_differs_is_kept_and_named_then_replaced_with_force(tiny_files, hub, tmp_path):
    models = models_dir(tmp_path)
    mine = models / "vae" / "sd-vae-ft-mse.safetensors"
    mine.parent.mkdir()
    mine.write_bytes(b"my own VAE")
    manifest = manifest_file(tiny_files, tmp_path)
    code, out = run(hub, models, "--no-check", manifest=manifest)
    assert code == 1, out
    expected = hashlib.sha256(tiny_files["sd-vae-ft-mse"]).hexdigest()
    assert (f"{mine} is not the released SD1.5 VAE (ft-MSE): its sha256 is {hashlib.sha256(b'my own VAE').hexdigest()}, "
            f"expected {expected} (the manifest); it was kept") in out
    assert mine.read_bytes() == b"my own VAE" and not hub.gets("diffusion_pytorch_model")
    code, out = run(hub, models, "--no-check", "--force", manifest=manifest)
    assert code == 0, out
    assert mine.read_bytes() == tiny_files["sd-vae-ft-mse"]


def test_the_released_pickle_saved_under_the_safetensors_name_is_converted_in_place(tiny_files, hub, tmp_path):
    """What the frontend's Download button (desktop app) saves for the image encoder: the hub's pickle bytes."""
    from safetensors.torch import load_file

    models = models_dir(tmp_path)
    target = models / "clip_vision" / "image_encoder.safetensors"
    target.parent.mkdir()
    target.write_bytes(tiny_files["image-encoder"])
    code, out = run(hub, models, "--no-check", manifest=manifest_file(tiny_files, tmp_path))
    assert code == 0, out
    assert "converted clip_vision/image_encoder.safetensors" in out
    assert not hub.gets("pytorch_model.bin")  # converted from the file there, not downloaded again
    assert set(load_file(str(target))) == set(torch.load(io.BytesIO(tiny_files["image-encoder"]), weights_only=True))


# ---- the other sets --------------------------------------------------------------------------------------

def test_animate_x_and_extras_land_in_their_folders_without_check(tiny_files, hub, tmp_path):
    models = models_dir(tmp_path)
    code, out = run(hub, models, "--set", "animate-x", "--with", "depth", manifest=manifest_file(tiny_files, tmp_path))
    assert code == 0, out
    wanted = mm.select("animate-x", ("depth",))
    assert {e.target for e in wanted} == {
        "diffusion_models/animate-x_ckpt.pth", "checkpoints/v2-1_512-ema-pruned.ckpt", "clip_vision/open_clip_pytorch_model.bin",
        "dwpose/yolox_l.onnx", "dwpose/dw-ll_ucoco_384.onnx", "depth_anything/Depth-Anything-V2-Small-hf/config.json",
        "depth_anything/Depth-Anything-V2-Small-hf/preprocessor_config.json", "depth_anything/Depth-Anything-V2-Small-hf/model.safetensors"}
    for e in wanted:
        assert models.joinpath(*e.target.split("/")).read_bytes() == tiny_files[e.key], e.target
    assert "check:" not in out  # check is the Moore set's


def test_a_file_the_hub_gives_no_sha256_for_must_read_as_what_it_is(tiny_files, tmp_path):
    """config.json files are plain git files on the hub (no LFS sha256): a broken one is refused, not written."""
    hub = FakeHub()
    for entry in mm.select("none", ("depth",)):
        data = b"<html>not json</html>" if entry.name.endswith("/config.json") else tiny_files[entry.key]
        hub.add(entry.repo_id, entry.revision, entry.path, data, lfs=not entry.name.endswith(".json"))
    hub.start()
    try:
        models = models_dir(tmp_path)
        code, out = run(hub, models, "--set", "none", "--with", "depth", manifest=manifest_file(tiny_files, tmp_path))
    finally:
        hub.stop()
    assert code == 1, out
    target = models / "depth_anything" / "Depth-Anything-V2-Small-hf" / "config.json"
    assert (f"REFUSED depth_anything/Depth-Anything-V2-Small-hf/config.json: depth-anything/Depth-Anything-V2-Small-hf@"
            f"{mm.DEPTH_SMALL[:12]}:config.json does not read as a .json file") in out and f"{target} was not written" in out
    assert not target.exists()
    assert (models / "depth_anything" / "Depth-Anything-V2-Small-hf" / "preprocessor_config.json").is_file()


def test_bad_flags_say_what_was_expected(tmp_path, capsys):
    from aa2_core.__main__ import main

    assert main(["download", "--models", str(tmp_path), "--with", "sam3"]) == 2
    assert "--with sam3: not an extra; expected a comma list of sam2, dwpose, depth, animatediff (or all)" in capsys.readouterr().err
    assert main(["download", "--models", str(tmp_path / "nope")]) == 1
    assert f"--models {tmp_path / 'nope'} does not exist; expected ComfyUI's models folder" in capsys.readouterr().out
    (tmp_path / "file").write_text("x")
    assert main(["download", "--models", str(tmp_path / "file")]) == 1
    assert "is a file; expected ComfyUI's models folder" in capsys.readouterr().out


def test_list_prints_urls_and_places_offline(tmp_path, capsys):
    from aa2_core.__main__ import main

    assert main(["download", "--models", str(tmp_path), "--list", "--with", "all"]) == 0
    out = capsys.readouterr().out
    for e in mm.select("moore", mm.EXTRAS):
        assert e.target in out and e.url in out
    assert not os.listdir(tmp_path)  # nothing written


# ---- the manifest itself, and who points at it ----------------------------------------------------------

def test_manifest_entries_are_well_formed_and_the_moore_targets_are_where_the_loaders_look(tmp_path):
    keys = [e.key for e in mm.MANIFEST]
    assert len(set(keys)) == len(keys) and len({e.target for e in mm.MANIFEST}) == len(keys)
    for e in mm.MANIFEST:
        mm.validate(e)
        assert set(e.sets) <= set(mm.SETS + mm.EXTRAS), e
        assert mm.COMMIT.fullmatch(e.revision) or e.revision == "main", e
        assert (e.sha256 is None) == (e.sha256_source is None), e  # a pinned hash names the page that publishes it
        if e.sha256_source:
            assert e.sha256_source.startswith(f"{mm.HUB}/{e.repo_id}/"), e  # published by the source repository itself
    for e in mm.select("moore"):  # empty files at the manifest's places: the loaders find every role there
        path = tmp_path.joinpath(*e.target.split("/"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    found, missing = locate_models(str(tmp_path))
    assert not missing and {os.path.relpath(p, tmp_path).replace(os.sep, "/") for p in found.values()} == {
        e.target for e in mm.select("moore")}
    from nodes.folders import AA2_FOLDER, MOTION_FOLDERS

    comfy_folders = {AA2_FOLDER, *MOTION_FOLDERS, "sam2", "dwpose", "vae", "clip_vision", "checkpoints", "diffusion_models"}
    assert {e.folder for e in mm.MANIFEST} - comfy_folders == {"depth_anything"}  # read by prepare --depth-model only


def test_missing_files_name_the_download_command(tmp_path, capsys):
    from aa2_core.__main__ import main

    assert main(["check", "--models", str(tmp_path)]) == 1
    lines = [l for l in capsys.readouterr().out.splitlines() if ": put it at " in l]
    assert len(lines) == 6
    for line in lines:
        assert line.endswith(f"; or fetch it: python -m aa2_core download --models {tmp_path} --set moore"), line


def test_the_pack_fetches_nothing_when_it_runs(hub, tmp_path):
    """check --tiny builds, saves, loads and runs every model: not one request reaches the (fake) hub."""
    environment = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    environment.update(HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "hf_home"), NO_PROXY="127.0.0.1,localhost")
    done = subprocess.run([sys.executable, "-m", "aa2_core", "check", "--tiny"], cwd=ROOT, env=environment,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert hub.log == []
