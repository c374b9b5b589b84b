"""Reading and writing videos and images for the command line (ComfyUI has its own loaders).

Videos go through PyAV, the library ComfyUI itself uses: H.264 in yuv420p in an mp4 is what every browser
plays inline, and the driving video's audio can be carried over into the output.
"""

from __future__ import annotations

import os
from contextlib import ExitStack
from fractions import Fraction

import numpy as np
import torch

from .atomic import atomic_path
from .errors import AA2Error

# audio codecs an mp4 holds and browsers play: copied packet for packet; anything else becomes AAC
COPY_AUDIO = {"aac", "mp3"}


def _cv2():
    try:
        import cv2
    except ImportError as e:  # opencv is a declared dependency; say so rather than fail deep inside
        raise AA2Error("reading images needs opencv: pip install opencv-python-headless") from e
    return cv2


def _av():
    try:
        import av
    except ImportError as e:  # a declared dependency; say so rather than fail deep inside
        raise AA2Error("reading and writing video needs PyAV: pip install av") from e
    return av


def read_image(path: str) -> torch.Tensor:
    """``[1, H, W, C]`` float 0..1 (C = 4 if the file has alpha, so the caller can refuse it)."""
    cv2 = _cv2()
    _check_file(path, "image")
    data = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if data is None:
        raise AA2Error(f"could not read {path} as an image")
    if data.ndim == 2:
        data = np.repeat(data[..., None], 3, axis=2)
    order = [2, 1, 0, 3][: data.shape[2]]  # BGR(A) -> RGB(A)
    scale = 65535.0 if data.dtype == np.uint16 else 255.0
    return torch.from_numpy(data[..., order].astype(np.float32) / scale)[None]


def _check_file(path: str, kind: str) -> None:
    if os.path.isdir(path):
        raise AA2Error(f"{path} is a folder, expected {'an' if kind[0] in 'aeiou' else 'a'} {kind} file")
    if not os.path.isfile(path):
        raise AA2Error(f"{kind} not found: {path}")


def _open(path: str):
    av = _av()
    _check_file(path, "video")
    try:
        return av.open(path)
    except av.FFmpegError as e:
        raise AA2Error(f"could not read {path} as a video ({e})") from e


def read_video(path: str, max_frames: int | None = None) -> tuple[torch.Tensor, float]:
    """(``[T, H, W, 3]`` float 0..1, fps)."""
    with _open(path) as container:
        if not container.streams.video:
            raise AA2Error(f"{path} has no video stream")
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or 24)
        frames = []
        try:
            for frame in container.decode(stream):
                if max_frames is not None and len(frames) >= max_frames:
                    break
                frames.append(torch.from_numpy(frame.to_ndarray(format="rgb24")))
        except _av().FFmpegError as e:  # a cut or damaged file fails part-way through, not at open
            raise AA2Error(f"{path}: could not decode frame {len(frames)} ({_av_reason(e)}); "
                           "the file may be truncated or damaged") from e
    if not frames:
        raise AA2Error(f"could not read any frame from {path}")
    return torch.stack(frames).float() / 255.0, fps


def _av_reason(e) -> str:
    """PyAV's message without its errno prefix (``[Errno 1094995529] Invalid data ...``)."""
    return getattr(e, "strerror", None) or str(e)


def video_rate(fps: float) -> Fraction:
    """An exact frame rate from a float: 8.0 -> 8, 29.97002997 -> 30000/1001 (NTSC rates survive the float)."""
    if not fps > 0:
        raise AA2Error(f"frame rate must be positive, got {fps}")
    return Fraction(fps).limit_denominator(1001)


def write_video(path: str, frames: torch.Tensor, fps: float = 24.0, audio_from: str | None = None, crf: int = 16) -> None:
    """Write ``[T, H, W, 3]`` 0..1 frames as an H.264 (yuv420p) mp4 that browsers play inline.

    ``audio_from``: a video or audio file whose first audio stream is carried over (cut to the video's
    length); a file without audio is fine, the output then has none. Written to a temporary name and renamed
    when whole, so an interrupted write leaves any previous file as it was.
    """
    av = _av()
    t, h, w, c = frames.shape
    if c != 3 or t == 0:
        raise AA2Error(f"write_video needs [T, H, W, 3] frames with T > 0, got {tuple(frames.shape)}")
    if h % 2 or w % 2:  # yuv420p halves the chroma planes
        raise AA2Error(f"H.264 needs an even width and height, got {w}x{h}")
    rate = video_rate(fps)
    pixels = (frames.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    with atomic_path(path) as tmp, ExitStack() as stack:  # the container closes (and flushes) before the rename
        src = stack.enter_context(_open(audio_from)) if audio_from is not None else None
        sound = src.streams.audio[0] if src is not None and src.streams.audio else None
        # faststart: the index first, so a browser starts playing before the whole file is in
        out = stack.enter_context(av.open(tmp, "w", format="mp4", options={"movflags": "+faststart"}))
        video = out.add_stream("libx264", rate=rate)
        video.width, video.height, video.pix_fmt = w, h, "yuv420p"
        video.options = {"crf": str(crf)}
        carry = _audio_stream(out, sound) if sound is not None else None  # every stream before the first packet
        for image in pixels:
            out.mux(video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        out.mux(video.encode(None))
        if carry is not None:
            carry(src, sound, t / rate)


def _audio_stream(out, sound):
    """Add the output's audio stream; returns the function that fills it (copy where mp4 takes the codec, else AAC)."""
    if sound.codec_context.name in COPY_AUDIO:
        target = out.add_stream_from_template(sound)
        return lambda src, stream, seconds: _copy_audio(src, stream, out, target, seconds)
    rate = sound.codec_context.sample_rate or 44100
    layout = "mono" if sound.codec_context.channels == 1 else "stereo"
    target = out.add_stream("aac", rate=rate, layout=layout)
    return lambda src, stream, seconds: _encode_audio(src, stream, out, target, seconds)


def _copy_audio(src, stream, out, target, seconds) -> None:
    """Packets as they are, up to the video's end."""
    for packet in src.demux(stream):
        if packet.dts is None:  # the demuxer's flush packet
            continue
        if packet.pts is not None and packet.pts * packet.time_base >= seconds:
            break
        packet.stream = target
        out.mux(packet)


def _encode_audio(src, stream, out, target, seconds) -> None:
    """Decoded, resampled to the AAC encoder's planar float and encoded, up to the video's end."""
    av = _av()
    rate, layout = target.codec_context.sample_rate, target.codec_context.layout.name
    resample = av.AudioResampler(format="fltp", layout=layout, rate=rate)
    budget = int(seconds * rate)  # samples that fit under the video
    for frame in src.decode(stream):
        for chunk in resample.resample(frame):
            if budget <= 0:
                break
            if chunk.samples > budget:  # the last chunk: keep what fits
                chunk = _cut(av, chunk, budget, layout, rate)
            budget -= chunk.samples
            chunk.pts = None  # the encoder numbers samples itself
            out.mux(target.encode(chunk))
    out.mux(target.encode(None))


def _cut(av, frame, samples, layout, rate):
    data = frame.to_ndarray()[:, :samples]
    cut = av.AudioFrame.from_ndarray(np.ascontiguousarray(data), format="fltp", layout=layout)
    cut.sample_rate = rate
    return cut
