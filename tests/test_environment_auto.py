"""The public-weights scene path that does not clip (issue 19 item 4): the regenerated region covers the driving
person and the character's own extent from its retargeted skeleton, objects stay the driving video's, no ghost of
the driving person is left, and environment mode ``auto`` follows whether the environment modules are trained."""

import copy
import json

import numpy as np
import pytest
import torch
from conftest import sampler_conditions, sampler_models
from conftest import sampler_settings as SamplerSettings

from aa2_core.conditions.environment import (environment_sequence, feathered, regenerated_region, shape_agnostic_mask,
                                             skeleton_extent)
from aa2_core.conditions.keypoints import JOINT, Pose
from aa2_core.errors import AA2Error
from aa2_core.pipeline.composite import composite_environment
from aa2_core.pipeline.options import EnvironmentMode
from aa2_core.pipeline.prepare import environment_frames
from aa2_core.pipeline.sampler import Sampler, environment_mode_on, environment_modules_trained

H, W = 128, 96
NECK_X = 48.0
JOINTS = {  # a standing driving person, pixels (x, y)
    "nose": (48, 18), "neck": (48, 30), "right_shoulder": (38, 32), "left_shoulder": (58, 32),
    "right_elbow": (34, 50), "left_elbow": (62, 50), "right_wrist": (32, 66), "left_wrist": (64, 66),
    "right_hip": (42, 70), "left_hip": (54, 70), "right_knee": (42, 92), "left_knee": (54, 92),
    "right_ankle": (42, 114), "left_ankle": (54, 114), "right_eye": (45, 16), "left_eye": (51, 16),
    "right_ear": (42, 18), "left_ear": (54, 18),
}  # fmt: skip
LIMBS = [("right_shoulder", "right_elbow", 5), ("right_elbow", "right_wrist", 5), ("left_shoulder", "left_elbow", 5),
         ("left_elbow", "left_wrist", 5), ("right_hip", "right_knee", 6), ("right_knee", "right_ankle", 6),
         ("left_hip", "left_knee", 6), ("left_knee", "left_ankle", 6), ("neck", "nose", 4)]


def pose(stretch: float = 1.0, shift: float = 0.0) -> Pose:
    """The driving skeleton, ``stretch`` times wider about the neck (a wider character after retargeting)."""
    body = np.zeros((18, 3))
    for name, (x, y) in JOINTS.items():
        body[JOINT[name]] = (NECK_X + stretch * (x - NECK_X) + shift, y, 0.9)
    return Pose(body, H, W)


def silhouette() -> torch.Tensor:
    """The driving person's mask ``[H, W]``, drawn from its joints with limb half-widths of a real build (an
    arm about an eighth of the torso length, a leg about a sixth), a torso as wide as the shoulders, a head."""
    ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32), indexing="ij")
    out = torch.zeros(H, W, dtype=torch.bool)
    for a, b, r in LIMBS:
        (x0, y0), (x1, y1) = JOINTS[a], JOINTS[b]
        d = torch.tensor([x1 - x0, y1 - y0], dtype=torch.float32)
        u = (((xs - x0) * d[0] + (ys - y0) * d[1]) / (d @ d)).clamp(0, 1)
        out |= (xs - x0 - u * d[0]) ** 2 + (ys - y0 - u * d[1]) ** 2 <= r * r
    out[28:74, 35:62] = True  # torso: shoulder to shoulder, neck to below the hips
    out |= (xs - 48) ** 2 + (ys - 16) ** 2 <= 9**2  # head
    return out.float()


def stretched(mask: torch.Tensor, stretch: float) -> torch.Tensor:
    """``mask`` ``stretch`` times wider about the neck's column: the character's true silhouette."""
    xs = torch.arange(W, dtype=torch.float32)
    source = torch.round(NECK_X + (xs - NECK_X) / stretch).long()
    inside = (source >= 0) & (source < W)
    out = torch.zeros_like(mask)
    out[:, inside] = mask[:, source[inside]]
    return out


def driving_video(frames: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.rand(frames, H, W, 3, generator=torch.Generator().manual_seed(seed))


def test_a_character_one_point_three_times_wider_is_not_clipped():
    person = silhouette()[None].expand(2, -1, -1)
    character = stretched(silhouette(), 1.3)[None].expand(2, -1, -1).bool()
    old = shape_agnostic_mask(person)  # the driving person's mask alone: the wider character is cut at its edge
    assert (character & (old < 0.5)).sum() > 50
    region = regenerated_region(person, [pose(1.3)] * 2)
    assert not (character & (region < 0.5)).any(), int((character & (region < 0.5)).sum())
    # the same region reaches the network through environment_frames: every character pixel is regenerated
    env, env_mask = environment_frames(driving_video(), person, character_poses=[pose(1.3)] * 2)
    assert torch.equal(env_mask, region) and not (character & (env_mask < 0.5)).any()
    assert torch.equal(env[env_mask.bool()], torch.full_like(env[env_mask.bool()], 0.5))
    # ... and the region is still the shape-agnostic mask of something, not the whole frame
    assert region.mean() < 0.5


def test_taller_character_and_skeleton_extent_follow_the_joints():
    tall = pose()
    tall.body[:, 1] = 30 + 1.15 * (tall.body[:, 1] - 30)  # 15 % longer legs and torso below the neck
    extent = skeleton_extent([tall], H, W)[0]
    assert extent[int(tall.body[JOINT["right_ankle"], 1]), int(tall.body[JOINT["right_ankle"], 0])] == 1
    assert extent[50, 48] == 1  # the torso between shoulders and hips is filled
    assert extent[5, 5] == 0 and extent[H - 1, W - 1] == 0
    empty = Pose.empty(H, W)
    assert skeleton_extent([empty], H, W).sum() == 0  # a frame without a person adds nothing
    half = skeleton_extent([pose().resized(H // 2, W // 2)], H, W)[0]  # another canvas is rescaled
    assert half[50, 48] == 1


def test_object_pixels_equal_the_driving_video_after_the_composite():
    person = silhouette()[None].expand(2, -1, -1)
    objects = torch.zeros(2, H, W)
    objects[:, 58:80, 70:84] = 1  # held next to the left hand (not touching the driving person), inside the character's region
    region_without = regenerated_region(person, [pose(1.3)] * 2)
    assert (region_without.bool() & objects.bool()).any()  # without the object mask the object would be regenerated
    driving = driving_video()
    env, region = environment_frames(driving, person, character_poses=[pose(1.3)] * 2, object_mask=objects)
    obj = objects.bool()
    assert not (region.bool() & obj).any()
    assert torch.equal(env[obj], driving[obj])  # the network sees the object
    generated = torch.rand(2, H, W, 3, generator=torch.Generator().manual_seed(1))
    out = composite_environment(generated, driving, region, feather=2, keep=objects)
    assert torch.equal(out[obj], driving[obj])
    blended = composite_environment(generated, driving, region, feather=2)  # the soft edge would reach over it
    assert not torch.equal(blended[obj], driving[obj])
    assert torch.equal(out[~obj], blended[~obj])  # elsewhere keep changes nothing


def test_no_ghost_every_driving_person_pixel_is_regenerated():
    person = silhouette()[None].expand(2, -1, -1)
    objects = torch.zeros(2, H, W)
    objects[:, 60:72, 60:80] = 1  # overlaps the left hand: the person wins there
    generated = torch.rand(2, H, W, 3, generator=torch.Generator().manual_seed(2))
    driving = driving_video()
    # the character's skeleton anchored elsewhere (retargeted onto the reference's position) and narrower
    for poses in ([pose(0.8, shift=14)] * 2, [pose(1.3)] * 2, None):
        _, region = environment_frames(driving, person, character_poses=poses, object_mask=objects)
        inside = person.bool()
        assert not (inside & (region < 0.5)).any()
        out = composite_environment(generated, driving, region, feather=2, keep=objects)
        assert torch.equal(out[inside], generated[inside])  # not one driving-person pixel shows
    overlap = person.bool() & objects.bool()
    assert overlap.any() and region[overlap].min() == 1


def test_the_old_inputs_give_the_old_results_bit_for_bit():
    person = silhouette()[None].expand(3, -1, -1).clone()
    person[1] = torch.roll(person[1], 7, dims=1)
    driving = driving_video(3)
    env, mask = environment_frames(driving, person)
    old_mask = shape_agnostic_mask(person)
    old_env, old_removed = environment_sequence(driving, old_mask)
    assert torch.equal(mask, old_removed) and torch.equal(env, old_env)
    assert torch.equal(regenerated_region(person, kh=4, kw=3), shape_agnostic_mask(person, 4, 3))
    generated = torch.rand(3, H, W, 3)
    m = feathered(mask, 2)[..., None]
    assert torch.equal(composite_environment(generated, driving, mask), m * generated + (1 - m) * driving)


def test_region_errors_name_the_input():
    person = silhouette()[None].expand(2, -1, -1)
    with pytest.raises(AA2Error, match="character_poses has 3 frames but character_mask has 2"):
        regenerated_region(person, [pose()] * 3)
    with pytest.raises(AA2Error, match="object_mask has 3 frames"):
        regenerated_region(person, None, torch.zeros(3, H, W))
    with pytest.raises(AA2Error, match="skeleton_extent: poses must be a non-empty list of Pose"):
        skeleton_extent([np.zeros((18, 3))], H, W)
    with pytest.raises(AA2Error, match="character poses: 3 frames but the driving video has 2"):
        environment_frames(driving_video(), person, character_poses=[pose()] * 3)
    with pytest.raises(AA2Error, match="keep \\(object mask\\) must be a MASK"):
        composite_environment(torch.rand(2, H, W, 3), driving_video(), person, keep=torch.zeros(3, H, W))


def test_one_driving_mask_for_every_frame_with_a_pose_and_an_object_mask_per_frame():
    person = silhouette()  # one mask stands for every frame
    poses = [pose(1.3), pose(1.3, shift=6)]
    objects = torch.zeros(2, H, W)
    objects[:, 58:80, 70:84] = 1
    region = regenerated_region(person, poses, objects)
    assert region.shape == (2, H, W) and not torch.equal(region[0], region[1])
    for t in range(2):
        assert torch.equal(region[t], regenerated_region(person[None], [poses[t]], objects[t : t + 1])[0])
    with pytest.raises(AA2Error, match="character_poses has 2 frames but object_mask has 3"):
        regenerated_region(person, poses, torch.zeros(3, H, W))


def test_cli_character_keypoints_and_environment_mode_flags(tmp_path):
    from aa2_core.cli.animate import character_keypoints, parser, settings_from
    from aa2_core.conditions.keypoints import poses_to_pose_keypoint

    pose_video = torch.zeros(2, H, W, 3)
    args = parser().parse_args(["--out", "x.mp4"])
    assert args.environment_mode == "auto" and settings_from(args).environment_mode == EnvironmentMode.AUTO
    assert character_keypoints(args, pose_video) is None
    path = tmp_path / "character.json"
    path.write_text(json.dumps(poses_to_pose_keypoint([pose(1.3)] * 3)))  # longer than the poses: cut to them
    args = parser().parse_args(["--out", "x.mp4", "--video", "v.mp4", "--character-keypoints", str(path),
                                "--environment-mode", "off"])
    found = character_keypoints(args, pose_video)
    assert len(found) == 2 and np.allclose(found[1].body, pose(1.3).body)
    assert settings_from(args).environment_mode == EnvironmentMode.OFF
    with pytest.raises(AA2Error, match="--character-keypoints grows the regenerated region .*give --video"):
        character_keypoints(parser().parse_args(["--out", "x.mp4", "--character-keypoints", str(path)]), pose_video)
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(AA2Error, match="--character-keypoints .*bad.json: not readable JSON"):
        character_keypoints(parser().parse_args(["--out", "x.mp4", "--video", "v", "--character-keypoints", str(bad)]),
                            pose_video)
    path.write_text(json.dumps(poses_to_pose_keypoint([pose(1.3)] * 2)))
    with pytest.raises(AA2Error, match="--character-keypoints .* has 2 frames; the poses have 3"):
        character_keypoints(args, torch.zeros(3, H, W, 3))


@pytest.mark.parametrize("radius", ["-0.1", "nan"])
def test_cli_refuses_a_negative_skeleton_radius_before_anything_loads(tmp_path, capsys, radius):
    from aa2_core.cli.animate import main

    assert main(["--tiny", "--out", str(tmp_path / "o.mp4"), "--device", "cpu", "--skeleton-radius", radius]) == 1
    assert f"error: --skeleton-radius must be 0 or more (a fraction of the character's body size), got {radius}" in \
        capsys.readouterr().out


def test_a_larger_skeleton_radius_covers_loose_clothes():
    person = silhouette()[None]
    coat = stretched(silhouette(), 1.3).bool()
    coat[74:100, 26:70] = True  # a wide coat below the hips, beyond the legs' capsules
    narrow = regenerated_region(person, [pose(1.3)])[0]
    assert (coat & (narrow < 0.5)).any()
    wide = regenerated_region(person, [pose(1.3)], skeleton_radius=0.3)[0]
    assert not (coat & (wide < 0.5)).any() and torch.equal(wide * narrow, narrow)


# ---- environment mode auto ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def untrained(loaded):
    return sampler_models(loaded)


@pytest.fixture(scope="module")
def trained(loaded):
    models = sampler_models({**loaded, "denoising": copy.deepcopy(loaded["denoising"])})
    with torch.no_grad():
        weight = models.denoising.env_conv_in.weight
        weight.copy_(0.05 * torch.randn(weight.shape, generator=torch.Generator().manual_seed(3)))
    return models


def test_auto_is_on_with_untrained_environment_modules_and_off_with_trained_ones(untrained, trained):
    assert not environment_modules_trained(untrained) and environment_modules_trained(trained)
    assert environment_mode_on("auto", untrained) and not environment_mode_on("auto", trained)
    for models in (untrained, trained):  # explicit on / off stay, as do the former booleans
        assert environment_mode_on("on", models) and environment_mode_on(True, models)
        assert not environment_mode_on("off", models) and not environment_mode_on(False, models)
    assert SamplerSettings().environment_mode == EnvironmentMode.AUTO
    assert SamplerSettings(environment_mode=True).environment_mode == EnvironmentMode.ON
    with pytest.raises(AA2Error, match="environment_mode must be one of \\['auto', 'on', 'off'\\], got 'sometimes'"):
        SamplerSettings(environment_mode="sometimes")


def test_auto_samples_as_on_untrained_and_as_off_trained(untrained, trained, loaded):
    cond = sampler_conditions(loaded["reference"], frames=2, environment=True)

    def sample(models, mode):
        return Sampler(models, SamplerSettings(steps=1, cfg=1.0, clip_length=2, environment_mode=mode)).sample(cond)

    outside = cond.environment_mask == 0

    def scene_kept(latents):  # environment mode on: the latents outside the mask are the environment's
        return torch.equal(latents.transpose(0, 1)[:, outside], cond.environment_latents.transpose(0, 1)[:, outside])

    auto = sample(untrained, "auto")
    assert torch.equal(auto, sample(untrained, True)) and scene_kept(auto)  # the public weights' default path
    auto = sample(trained, "auto")
    assert torch.equal(auto, sample(trained, False)) and not scene_kept(auto)  # trained modules read the scene


def test_environment_mask_node_takes_the_character_pose_and_the_object_mask(pack):
    from aa2_core.conditions.keypoints import poses_to_pose_keypoint

    node = pack.NODE_CLASS_MAPPINGS["AA2EnvironmentMask"]()
    spec = node.INPUT_TYPES()["optional"]
    assert spec["character_pose"][0] == "POSE_KEYPOINT" and spec["object_mask"][0] == "MASK"
    person, driving = silhouette()[None].expand(2, -1, -1), driving_video()
    objects = torch.zeros(2, H, W)
    objects[:, 58:80, 70:84] = 1
    env, mask = node.build(driving, person, 0, 0, 0.5, character_pose=poses_to_pose_keypoint([pose(1.3)] * 2),
                           object_mask=objects)
    expected = environment_frames(driving, person, character_poses=[pose(1.3)] * 2, object_mask=objects)
    assert torch.equal(mask, expected[1]) and torch.equal(env, expected[0])
    assert torch.equal(node.build(driving, person, 0, 0, 0.5)[1], environment_frames(driving, person)[1])
    assert spec["skeleton_radius"][1]["default"] == 0.2  # the library's SKELETON_RADIUS
    wide = node.build(driving, person, 0, 0, 0.5, character_pose=poses_to_pose_keypoint([pose(1.3)] * 2),
                      skeleton_radius=0.35)[1]
    assert torch.equal(wide, environment_frames(driving, person, character_poses=[pose(1.3)] * 2, skeleton_radius=0.35)[1])
    assert wide.sum() > environment_frames(driving, person, character_poses=[pose(1.3)] * 2)[1].sum()
    with pytest.raises(ValueError, match="AA2 Environment Mask: object_mask has 3 frames but images has 2"):
        node.build(driving, person, 0, 0, 0.5, object_mask=torch.zeros(3, H, W))
    composite = pack.NODE_CLASS_MAPPINGS["AA2CompositeEnvironment"]()
    out = composite.composite(torch.rand(2, H, W, 3), driving, mask, 2, object_mask=objects)[0]
    assert torch.equal(out[objects.bool()], driving[objects.bool()])


def test_animate_x_cli_keeps_objects_and_does_not_clip_the_character(tmp_path, monkeypatch, capsys):
    """animate --family animate-x with --character-keypoints: the region beyond the driving person that the wider
    character's skeleton covers is regenerated (without the flag it is the driving video's); with --objects too, the
    pixels of an object held there are the driving video's (without it they are regenerated)."""
    import cv2

    from aa2_core import video_io
    from aa2_core.cli import animate as animate_cli
    from aa2_core.cli.animate_x import write_tiny_animate_x_dir
    from aa2_core.conditions.keypoints import poses_to_pose_keypoint

    models = str(tmp_path / "models")
    write_tiny_animate_x_dir(models)
    g = torch.Generator().manual_seed(0)
    frames = 2
    objects = torch.zeros(frames, H, W, 3)
    objects[:, 56:72, 12:26] = 1  # held by the wider character's right hand, left of the driving person's
    media = {"drive.mp4": torch.rand(frames, H, W, 3, generator=g), "mask.mp4": silhouette()[None, ..., None].expand(frames, H, W, 3),
             "objects.mp4": objects, "kps.mp4": torch.rand(frames, H, W, 3, generator=g)}
    for name, video in media.items():
        video_io.write_video(str(tmp_path / name), video, 8)
    cv2.imwrite(str(tmp_path / "ref.png"), (torch.rand(H, W, 3, generator=g).numpy() * 255).astype(np.uint8))
    (tmp_path / "character.json").write_text(json.dumps(poses_to_pose_keypoint([pose(1.3)] * frames)))
    written = []
    monkeypatch.setattr(video_io, "write_video", lambda path, video, *a, **k: written.append(video))

    def run(*extra):
        argv = ["--family", "animate-x", "--models", models, "--ref", str(tmp_path / "ref.png"), "--poses",
                str(tmp_path / "kps.mp4"), "--video", str(tmp_path / "drive.mp4"), "--mask", str(tmp_path / "mask.mp4"),
                "--steps", "1", "--device", "cpu", "--out", str(tmp_path / "o.mp4"), *extra]
        assert animate_cli.main(argv) == 0, capsys.readouterr().out
        return written[-1]

    def differ(a, b):
        return (a - b).abs().mean() > 0.05

    read, person, box = (video_io.read_video(str(tmp_path / n))[0] for n in ("drive.mp4", "mask.mp4", "objects.mp4"))
    person, box = person[..., 0], box[..., 0] > 0.5
    character = ["--character-keypoints", str(tmp_path / "character.json")]
    plain, grown, held = run(), run(*character), run(*character, "--objects", str(tmp_path / "objects.mp4"))
    plain_region = environment_frames(read, person, (H, W))[1]
    grown_region = environment_frames(read, person, (H, W), character_poses=[pose(1.3)] * frames)[1]
    # the wider character's own extent, outside the person's region and its composite's feathered edge
    beyond = (feathered(plain_region, 2) == 0) & (grown_region == 1) & ~box
    assert beyond.sum() > 100
    assert torch.equal(plain[beyond], read[beyond]) and differ(grown[beyond], read[beyond])
    on_object = box & (grown_region == 1) & (person < 0.5)
    assert on_object.sum() > 40
    assert differ(grown[on_object], read[on_object]) and torch.equal(held[on_object], read[on_object])
