// Plays one video file from the test server in headless Chromium and prints one JSON line:
//   {can_play: {mp4_h264, webm_vp9}, duration, width, height, ready_state, error, time, screenshot}
// The page holds only a <video> element (no frontend), paused on the time asked for, drawn 4x larger
// (nearest neighbour) so the screenshot holds the frame's own pixels. Requests to anything but the
// server are aborted (closed network).
// Usage: node play_video.mjs VIDEO_URL SECONDS OUT.png [FRAME_SECONDS]
// FRAME_SECONDS (one frame's duration) tells a presented frame at the seek target from a leftover one.
import { chromium } from "playwright-core";

const [url, seconds, out, frameSeconds = "0.04"] = process.argv.slice(2);
if (!url || !seconds || !out) {
  console.error("usage: node play_video.mjs VIDEO_URL SECONDS OUT.png [FRAME_SECONDS]");
  process.exit(2);
}
const origin = new URL(url).origin;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--autoplay-policy=no-user-gesture-required"],
});
try {
  const page = await browser.newPage({ viewport: { width: 800, height: 600 } });
  const blank = `${origin}/aa2-playback-test-page`;  // an empty page of the video's origin, served here
  await page.route("**/*", (route) => {
    const requested = route.request().url();
    if (requested === blank) return route.fulfill({ contentType: "text/html", body: "<!doctype html><body></body>" });
    return new URL(requested).origin === origin ? route.continue() : route.abort();
  });
  await page.goto(blank, { waitUntil: "load" });
  // 1. load, play a moment, pause, at the final size (no re-layout later)
  const loadedState = await page.evaluate(async ([src]) => {
    document.body.innerHTML = "";
    document.body.style.cssText = "margin:0;background:#000";
    const video = document.createElement("video");
    window.__video = video;
    video.muted = true;
    video.preload = "auto";
    video.style.cssText = "display:block;image-rendering:pixelated";
    const probe = {
      mp4_h264: video.canPlayType('video/mp4; codecs="avc1.640028"'),
      webm_vp9: video.canPlayType('video/webm; codecs="vp9"'),
    };
    const loaded = new Promise((resolve) => {
      for (const e of ["loadeddata", "error"]) video.addEventListener(e, (ev) => resolve(ev.type), { once: true });
      setTimeout(() => resolve("timeout"), 20000);
    });
    video.src = src;
    document.body.appendChild(video);
    const first = await loaded;
    if (first === "loadeddata") {
      video.style.width = `${video.videoWidth * 4}px`;
      video.style.height = `${video.videoHeight * 4}px`;
      await video.play().catch(() => {});  // decoding really runs, then stop
      video.pause();
      await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
    }
    return { can_play: probe, first_event: first };
  }, [url]);
  const before = loadedState.first_event === "loadeddata" ? await page.locator("video").screenshot() : null;

  // 2. seek to the asked time. "seeked" says the decoder is there, not that the frame is on screen: wait for
  // the compositor to present a frame whose media time is the target's (requestVideoFrameCallback)...
  const state = await page.evaluate(async ([t, frame, first]) => {
    const video = window.__video;
    let seeked = null, presented = null;
    if (first === "loadeddata") {
      const painted = new Promise((resolve) => {
        const timer = setTimeout(() => resolve(null), 20000);
        const watch = () => video.requestVideoFrameCallback((now, meta) => {
          if (meta.mediaTime <= t + 1e-3 && meta.mediaTime > t - frame) {  // the frame showing at t
            clearTimeout(timer);
            resolve(meta.mediaTime);
          } else watch();  // a frame left over from playing: keep waiting
        });
        watch();
      });
      const s = new Promise((resolve) => {
        for (const e of ["seeked", "error"]) video.addEventListener(e, (ev) => resolve(ev.type), { once: true });
        setTimeout(() => resolve("timeout"), 20000);
      });
      video.currentTime = t;
      seeked = await s;
      presented = await painted;
      await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
    }
    return {
      seeked, duration: Number.isFinite(video.duration) ? video.duration : String(video.duration),
      width: video.videoWidth, height: video.videoHeight, ready_state: video.readyState, time: video.currentTime,
      presented_time: presented, error: video.error ? `${video.error.code}: ${video.error.message}` : null,
    };
  }, [Number(seconds), Number(frameSeconds), loadedState.first_event]);
  Object.assign(state, loadedState);

  // ...and, since a loaded machine can still show the old picture after that, take screenshots until the
  // picture has changed from the one before the seek and two in a row agree (at most ~30 s)
  let polls = 0;
  if (state.width) {
    let previous = null;
    for (; polls < 300; polls++) {
      const shot = await page.locator("video").screenshot({ path: out });
      if (previous && shot.equals(previous) && !shot.equals(before)) break;
      previous = shot;
      await page.waitForTimeout(100);
    }
  }
  state.screenshot_polls = polls;
  console.log(JSON.stringify({ ...state, screenshot: state.width ? out : null }));
} finally {
  await browser.close();
}
