"""video_io writes browser-playable H.264 through PyAV and carries the driving video's audio over."""

from fractions import Fraction

import av
import numpy as np
import pytest
import torch

from aa2_core.errors import AA2Error
from aa2_core.video_io import read_video, video_rate, write_video

TONE = 440.0  # Hz


def moving_gradient(frames=12, h=48, w=64):
    """Smooth frames with motion: what a codec meets in practice (random noise is its worst case)."""
    y, x = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    out = [torch.stack([0.5 + 0.3 * torch.sin(3 * x + t / 4), 0.5 + 0.3 * torch.cos(2 * y + t / 5),
                        0.5 + 0.2 * torch.sin(2 * (x + y) + t / 3)], -1) for t in range(frames)]
    return torch.stack(out)


def clip_with_tone(path, seconds=2.0, codec="aac", rate=44100, fps=8):
    """A small driving clip: grey frames and a sine tone (AAC in mp4, or PCM in a .mov)."""
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = 32, 32, "yuv420p"
        audio = out.add_stream(codec, rate=rate, layout="mono")
        for _ in range(int(seconds * fps)):
            out.mux(video.encode(av.VideoFrame.from_ndarray(np.full((32, 32, 3), 128, np.uint8), format="rgb24")))
        out.mux(video.encode(None))
        tone = np.sin(2 * np.pi * TONE * np.arange(int(seconds * rate)) / rate).astype(np.float32)
        fmt = audio.codec_context.format.name
        samples = (tone * 32000).astype(np.int16) if fmt.startswith("s16") else tone
        for start in range(0, len(samples), 1024):
            frame = av.AudioFrame.from_ndarray(samples[None, start : start + 1024], format=fmt.rstrip("p") if fmt == "s16" else fmt, layout="mono")
            frame.sample_rate = rate
            out.mux(audio.encode(frame))
        out.mux(audio.encode(None))


def probe(path):
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        info = dict(codec=v.codec_context.name, pix_fmt=v.codec_context.pix_fmt, rate=v.average_rate,
                    size=(v.codec_context.width, v.codec_context.height), frames=sum(1 for _ in c.decode(v)))
    with av.open(str(path)) as c:
        if c.streams.audio:
            a = c.streams.audio[0]
            samples = np.concatenate([f.to_ndarray()[0] for f in c.decode(a)])
            info.update(audio_codec=a.codec_context.name, audio_rate=a.codec_context.sample_rate, samples=samples)
    return info


def psnr(a, b):
    return (10 * torch.log10(1 / ((a - b) ** 2).mean())).item()


def dominant_frequency(samples, rate):
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return np.argmax(spectrum) * rate / len(samples)


def test_h264_yuv420p_at_the_given_rate_with_every_frame(tmp_path):
    frames = moving_gradient()
    path = tmp_path / "out.mp4"
    write_video(str(path), frames, 30000 / 1001)
    info = probe(path)
    assert info["codec"] == "h264" and info["pix_fmt"] == "yuv420p"  # what browsers play inline
    assert info["rate"] == Fraction(30000, 1001) and info["frames"] == 12 and info["size"] == (64, 48)
    assert "audio_codec" not in info
    decoded, fps = read_video(str(path))
    assert decoded.shape == frames.shape and abs(fps - 29.97) < 0.01
    assert psnr(decoded, frames) > 38  # crf 16, 4:2:0 chroma, smooth frames: measured 42.2 dB (lossless crf 0: 43.6)
    assert read_video(str(path), max_frames=5)[0].shape[0] == 5


def test_rates_survive_the_float():
    assert video_rate(8.0) == 8 and video_rate(24000 / 1001) == Fraction(24000, 1001) and video_rate(12.5) == Fraction(25, 2)
    with pytest.raises(AA2Error, match="positive"):
        video_rate(0)


@pytest.mark.parametrize("source, codec", [("drive.mp4", "aac"), ("drive.mov", "pcm_s16le")])
def test_the_driving_videos_audio_is_carried_over(tmp_path, source, codec):
    """AAC is copied packet for packet, other codecs become AAC; both cut to the video's length."""
    clip_with_tone(tmp_path / source, seconds=2.0, codec=codec)
    path = tmp_path / "out.mp4"
    write_video(str(path), moving_gradient(8), 8, audio_from=str(tmp_path / source))  # 1 s of video
    info = probe(path)
    assert info["audio_codec"] == "aac" and info["audio_rate"] == 44100
    seconds = len(info["samples"]) / 44100
    assert 0.9 < seconds < 1.1, seconds  # cut at the video's end, not the source's 2 s
    assert abs(dominant_frequency(info["samples"], 44100) - TONE) < 3  # the driving video's own sound
    assert info["frames"] == 8


def test_no_audio_where_the_source_has_none(tmp_path):
    write_video(str(tmp_path / "silent.mp4"), moving_gradient(4), 8)
    write_video(str(tmp_path / "out.mp4"), moving_gradient(4), 8, audio_from=str(tmp_path / "silent.mp4"))
    assert "audio_codec" not in probe(tmp_path / "out.mp4")


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(AA2Error, match="even width and height"):
        write_video(str(tmp_path / "odd.mp4"), torch.zeros(2, 33, 32, 3))
    with pytest.raises(AA2Error, match="not found"):
        read_video(str(tmp_path / "missing.mp4"))
    (tmp_path / "junk.mp4").write_bytes(b"not a video")
    with pytest.raises(AA2Error, match="could not read"):
        read_video(str(tmp_path / "junk.mp4"))
