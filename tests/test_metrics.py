"""The papers' metrics on small arrays: known answers, agreement with torchmetrics / scikit-image / SciPy, and
the metric networks loading tiny files in the released layouts through the users' code path."""

import math

import numpy as np
import pytest
import torch
from scipy import linalg
from skimage.metrics import structural_similarity
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

from aa2_core.errors import AA2Error, CheckpointError
from aa2_core.metrics import frames, frechet, i3d, inception, lpips, resnet3d, tiny


@pytest.fixture(autouse=True)
def one_thread():
    """The tiny networks' layers are too small to share out: on a busy 2-core machine two threads wait on
    each other (a 1/16-width Inception frame: 0.08 s on one thread, seconds on two)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def video(seed, t=3, h=24, w=32):
    return np.random.default_rng(seed).integers(0, 256, (t, h, w, 3), dtype=np.uint8)


def noisy(x, sigma, seed):
    noise = np.random.default_rng(seed).normal(0, sigma, x.shape)
    return np.clip(np.round(x + noise), 0, 255).astype(np.uint8)


# ---- frame metrics -------------------------------------------------------------------------------------------

def test_identical_videos_give_the_perfect_scores():
    x = video(0)
    assert np.all(frames.psnr_star(x, x) == 100.0)  # DisCo's cap for MSE = 0
    assert np.allclose(frames.ssim(x, x), 1.0, atol=1e-12)
    assert np.allclose(frames.ssim_disco(x, x), 1.0, atol=1e-12)
    assert np.all(frames.l1_disco(x, x) == 0)
    assert math.isinf(frames.psnr_from(*frames.squared_error(x, x)))


def test_known_gaussian_noise_gives_its_psnr():
    sigma = 8.0
    clean = np.full((4, 64, 64, 3), 128, np.uint8)  # mid-grey: +-5 sigma never clips
    dirty = noisy(clean, sigma, 1)
    expected = 10 * math.log10(255 ** 2 / (sigma ** 2 + 1 / 12))  # rounding to integers adds 1/12
    assert frames.psnr_star(dirty, clean).mean() == pytest.approx(expected, abs=0.1)
    assert frames.psnr_from(*frames.squared_error(dirty, clean)) == pytest.approx(expected, abs=0.1)
    assert frames.psnr_star(dirty, clean).mean() < 100 - 50  # not the identical-frames cap


def test_psnr_star_is_disco_formula_per_frame_and_psnr_is_torchmetrics_over_the_set():
    truth = video(2)
    gen = noisy(truth, 20, 3)
    disco = [20 * math.log10(255.0 / math.sqrt(np.mean((g.astype(np.float64) - t.astype(np.float64)) ** 2)))
             for g, t in zip(gen, truth)]
    assert np.allclose(frames.psnr_star(gen, truth), disco, rtol=0, atol=1e-12)
    ours = frames.psnr_from(*frames.squared_error(gen, truth))
    ref = peak_signal_noise_ratio(torch.from_numpy(gen).double(), torch.from_numpy(truth).double(), data_range=255.0)
    assert ours == pytest.approx(ref.item(), abs=1e-5)  # torchmetrics works in float32 here


def test_ssim_agrees_with_torchmetrics_and_skimage_on_random_videos():
    truth = video(4)
    gen = noisy(truth, 30, 5)
    ours = frames.ssim(gen, truth)
    _, ssim_map = structural_similarity_index_measure(torch.from_numpy(gen).permute(0, 3, 1, 2).double(),
                                                      torch.from_numpy(truth).permute(0, 3, 1, 2).double(),
                                                      data_range=255.0, reduction="none", return_full_image=True)
    # torchmetrics also averages a reflect-padded 5 px border; its map without that border is our number
    assert np.allclose(ours, ssim_map[..., 5:-5, 5:-5].mean(dim=(1, 2, 3)).numpy(), atol=1e-9)
    sk = [structural_similarity(g, t, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                data_range=255, channel_axis=-1) for g, t in zip(gen, truth)]
    assert np.allclose(ours, sk, atol=1e-9)
    assert 0.1 < ours.mean() < 0.99


def test_disco_ssim_is_skimage_defaults_on_opencv_gray():
    import cv2

    truth = video(6)
    gen = noisy(truth, 30, 7)
    sk = [structural_similarity(cv2.cvtColor(g, cv2.COLOR_RGB2GRAY), cv2.cvtColor(t, cv2.COLOR_RGB2GRAY))
          for g, t in zip(gen, truth)]
    assert np.allclose(frames.ssim_disco(gen, truth), sk, atol=1e-9)


def test_l1_is_discos_mean_absolute_difference_over_pixel_count():
    truth = np.full((2, 12, 16, 3), 100, np.uint8)
    gen = truth + np.uint8(10)
    assert np.allclose(frames.l1_disco(gen, truth), 10 / (12 * 16))
    assert np.allclose(frames.l1_disco(truth, gen), 10 / (12 * 16))  # no uint8 wrap-around


# ---- Fréchet distance ------------------------------------------------------------------------------------------

def pytorch_fid_frechet(a, b):
    """pytorch-fid's calculate_frechet_distance, written out: np.cov, scipy sqrtm of the product, real part."""
    mu1, mu2, s1, s2 = a.mean(0), b.mean(0), np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(s1.dot(s2))
    assert np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3)
    return float((mu1 - mu2).dot(mu1 - mu2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean.real))


def test_frechet_distance_matches_a_direct_float64_computation():
    rng = np.random.default_rng(0)
    a = rng.normal(0, 1, (200, 6))
    b = rng.normal(0.3, 1, (150, 6)) @ rng.normal(0, 0.7, (6, 6))
    ours = frechet.features_distance(a, b)
    assert ours == pytest.approx(pytorch_fid_frechet(a, b), rel=1e-9)
    assert ours > 0.5
    assert frechet.features_distance(a, a) == pytest.approx(0, abs=1e-9)
    assert frechet.features_distance(a, a + 2.0) == pytest.approx(6 * 4.0, rel=1e-9)  # a shift costs |shift|^2


def test_frechet_distance_with_fewer_samples_than_dimensions():
    """Few test clips, 400-d I3D logits: rank-deficient covariances, where sqrtm of the product drifts."""
    rng = np.random.default_rng(1)
    a, b = rng.normal(0, 1, (4, 50)), rng.normal(0, 1, (4, 50))
    d = frechet.features_distance(a, b)
    assert np.isfinite(d) and d > 0 and d == pytest.approx(frechet.features_distance(b, a), rel=1e-9)
    assert 0 <= frechet.features_distance(a, a) < 1e-4  # zero up to the sqrt of rounded null eigenvalues
    assert frechet.features_distance(a, a + 1.0) == pytest.approx(50.0, abs=1e-4)
    # two Gaussians with equal covariance: the distance is the squared distance of the means
    s = np.cov(a, rowvar=False)
    assert frechet.frechet_distance(np.zeros(50), s, np.full(50, 0.5), s) == pytest.approx(50 * 0.25, abs=1e-4)


def test_frechet_distance_needs_two_samples_per_side():
    with pytest.raises(AA2Error, match="at least 2"):
        frechet.features_distance(np.zeros((1, 4)), np.zeros((5, 4)))


# ---- metric networks from files in the released layouts -----------------------------------------------------

def test_full_size_networks_have_the_released_key_layouts():
    """Key names and shapes of the released files (pt_inception-2015-12-05, rgb_imagenet.pt / i3d_pretrained_400,
    resnet-50-kinetics, lpips v0.1 alex.pth) on full-width networks built on meta."""
    with torch.device("meta"):
        inc, i3, rn = inception.FIDInception(), i3d.I3D(), resnet3d.ResNet3D()
        alex = lpips.LPIPS("alex", {0: (64, 3), 3: (192, 64), 6: (384, 192), 8: (256, 384), 10: (256, 256)})
    shapes = {**{f"inc:{k}": tuple(v.shape) for k, v in inc.state_dict().items()},
              **{f"i3d:{k}": tuple(v.shape) for k, v in i3.state_dict().items()},
              **{f"rn:{k}": tuple(v.shape) for k, v in rn.state_dict().items()},
              **{f"lp:{k}": tuple(v.shape) for k, v in alex.state_dict().items()}}
    assert shapes["inc:Conv2d_1a_3x3.conv.weight"] == (32, 3, 3, 3)
    assert shapes["inc:Mixed_6e.branch7x7dbl_5.conv.weight"] == (192, 192, 1, 7)
    assert shapes["inc:Mixed_7c.branch_pool.conv.weight"] == (192, 2048, 1, 1)
    assert shapes["inc:Mixed_7b.branch3x3dbl_1.bn.running_var"] == (448,)
    assert shapes["i3d:Conv3d_1a_7x7.conv3d.weight"] == (64, 3, 7, 7, 7)
    assert shapes["i3d:Mixed_5c.b3b.conv3d.weight"] == (128, 832, 1, 1, 1)
    assert shapes["i3d:logits.conv3d.weight"] == (400, 1024, 1, 1, 1)
    assert shapes["rn:layer1.0.downsample.0.weight"] == (256, 64, 1, 1, 1)
    assert shapes["rn:layer4.2.conv3.weight"] == (2048, 512, 1, 1, 1)
    assert shapes["rn:fc.weight"] == (400, 2048)
    assert [shapes[f"lp:lin{i}.model.1.weight"] for i in range(5)] == [(1, c, 1, 1) for c in (64, 192, 384, 256, 256)]
    assert shapes["lp:features.10.weight"] == (256, 256, 3, 3)
    assert inc.features == 2048 and rn.features == 2048

    def size(model, prefix=""):  # tensors and values, batch-norm counters aside (not in converted files)
        sd = {k: v for k, v in model.state_dict().items() if k.startswith(prefix) and not k.endswith("num_batches_tracked")}
        return len(sd), sum(v.numel() for v in sd.values())

    # counted on the reference code that loads the released files strictly: torch-fidelity's FID Inception
    # (472 tensors, 23,885,392 values, of which fc holds 2 and 2,065,392), DisCo's InceptionI3d and resnet50
    assert size(inc) == (470, 21_820_000)
    assert size(i3) == (287, 12_711_824)
    assert size(rn) == (267, 47_071_696)
    assert size(alex, "features.") == (10, 2_469_696)  # torchvision AlexNet features
    assert size(alex, "lin") == (5, 1_152)  # lpips weights/v0.1/alex.pth


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("metric_nets"))
    return {ext: tiny.write_all(folder, ext) for ext in (".pth", ".safetensors")}


def test_lpips_from_tiny_files_in_both_formats(files):
    a, b = torch.rand(2, 3, 40, 48), torch.rand(2, 3, 40, 48)
    with torch.no_grad():
        outs = [lpips.load(f["lpips"], f["lpips_backbone"])(a, b) for f in files.values()]
        same = lpips.load(files[".pth"]["lpips"], files[".pth"]["lpips_backbone"])(a, a)
    assert torch.allclose(outs[0], outs[1], rtol=1e-5, atol=1e-7)  # the same numbers from .pth and .safetensors
    assert outs[0].shape == (2,) and (outs[0] > 0).all()
    assert torch.all(same.abs() < 1e-6)


def lpips_by_hand(lin_path, backbone_path, a, b):
    """LPIPS v0.1 written out from the lpips package (lpips.py, pretrained_networks.alexnet) with plain torch ops
    on the files' tensors: ScalingLayer, AlexNet taps after ReLUs 1/4/7/9/11, unit-normalise, (f0-f1)^2, 1x1
    linear layer, spatial mean, sum."""
    import torch.nn.functional as F

    lin, net = torch.load(lin_path, weights_only=True), torch.load(backbone_path, weights_only=True)
    shift = torch.tensor([-.030, -.088, -.188]).view(1, 3, 1, 1)
    scale = torch.tensor([.458, .448, .450]).view(1, 3, 1, 1)

    def taps(x):
        x = ((2 * x - 1) - shift) / scale
        out = []
        for i, (stride, pad, pool) in zip((0, 3, 6, 8, 10), ((4, 2, True), (1, 2, True), (1, 1, False), (1, 1, False), (1, 1, False))):
            if i == 3 or i == 6:
                x = F.max_pool2d(x, 3, 2)
            x = F.relu(F.conv2d(x, net[f"features.{i}.weight"], net[f"features.{i}.bias"], stride, pad))
            out.append(x / (x.pow(2).sum(1, keepdim=True).sqrt() + 1e-10))
        return out

    total = 0
    for k, (fa, fb) in enumerate(zip(taps(a), taps(b))):
        total = total + F.conv2d((fa - fb) ** 2, lin[f"lin{k}.model.1.weight"]).mean(dim=(2, 3))
    return total.flatten()


def test_lpips_is_the_packages_formula(files):
    f = files[".pth"]
    a, b = torch.rand(2, 3, 40, 48), torch.rand(2, 3, 40, 48)
    with torch.no_grad():
        assert torch.allclose(lpips.load(f["lpips"], f["lpips_backbone"])(a, b),
                              lpips_by_hand(f["lpips"], f["lpips_backbone"], a, b), rtol=1e-5, atol=1e-7)


def test_network_outputs_stay_pinned(files):
    """Regression pins for the tiny files (seed 0). At full width, on shared random weights, these networks gave
    torch-fidelity's FID Inception bit for bit and DisCo's I3D / 3D ResNet-50 code within float rounding."""
    f = files[".pth"]
    g = torch.Generator().manual_seed(0)
    x, clip = torch.rand(1, 3, 32, 32, generator=g), torch.rand(1, 3, 2, 64, 64, generator=g)
    with torch.no_grad():
        outs = [inception.load(f["inception"])(x), i3d.load(f["i3d"])(clip * 2 - 1),
                resnet3d.load(f["resnet3d"])(clip * 255 - 110)]
    got = [torch.stack([v.sum(), v.abs().max(), v[0, 1]]) for v in outs]  # ReLU zeros make single entries weak
    for value, pinned in zip(got, PINNED):
        assert torch.allclose(value, torch.tensor(pinned), rtol=1e-4, atol=1e-5)


PINNED = [[51.441513, 4.129478, 1.473925], [9.016222, 1.067269, -0.113312], [92447.351562, 3638.77832, 0.0]]


def test_inception_i3d_resnet3d_from_tiny_files_in_both_formats(files):
    x = torch.rand(1, 3, 32, 32)
    clip = torch.rand(1, 3, 2, 64, 64)
    with torch.no_grad():
        got = {ext: (inception.load(f["inception"])(x), i3d.load(f["i3d"])(clip * 2 - 1),
                     resnet3d.load(f["resnet3d"])(clip * 255 - 110)) for ext, f in files.items()}
    for a, b in zip(got[".pth"], got[".safetensors"]):  # same tensors; CPU kernels may differ in the last bits
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-5) and torch.isfinite(a).all() and a.abs().sum() > 0
    feats, logits, pooled = got[".pth"]
    assert feats.shape == (1, 2048 // 16) and logits.shape == (1, 400) and pooled.shape == (1, 2048 // 8)


def test_a_weight_file_for_another_network_is_refused_naming_it(files):
    f = files[".pth"]
    with pytest.raises(CheckpointError, match=r"FID Inception.*i3d_tiny\.pth"):
        inception.load(f["i3d"])
    with pytest.raises(CheckpointError, match="linear layers"):
        lpips.load(f["lpips_backbone"])
    with pytest.raises(CheckpointError, match=r"no backbone weights.*--lpips-backbone"):
        lpips.load(f["lpips"])


def test_a_damaged_file_is_refused_with_its_missing_and_misshapen_keys(files, tmp_path):
    sd = torch.load(files[".pth"]["i3d"], weights_only=True)
    del sd["Mixed_4c.b1b.bn.running_var"]
    sd["logits.conv3d.bias"] = torch.zeros(7)
    torch.save(sd, tmp_path / "broken_i3d.pth")
    with pytest.raises(CheckpointError) as e:
        i3d.load(str(tmp_path / "broken_i3d.pth"))
    text = str(e.value)
    assert "broken_i3d.pth" in text and "missing 1 keys: Mixed_4c.b1b.bn.running_var" in text
    assert "logits.conv3d.bias (7,) (expected (400,))" in text
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        resnet3d.load(str(tmp_path / "empty.pth"))
