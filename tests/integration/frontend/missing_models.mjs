// Loads workflow JSON files in ComfyUI's real frontend (served by the server at URL) in headless Chromium and
// prints, per workflow, what its missing-models panel shows: one JSON line
//   {name, missing: [{label, url, error}], dialogs, blocked, page_errors}
// missing: the entries of the "Missing Models" dialog (label "directory / name", the URL the Download button
// fetches, and the frontend's own note such as "Only allowed suffixes ..."), [] when no such dialog opened;
// dialogs: the text of every dialog open after the load; blocked: requests the page tried to make outside the
// server (the panel asks each URL for its size): they are aborted, nothing leaves 127.0.0.1;
// page_errors: uncaught exceptions during the load.
// Usage: node missing_models.mjs URL workflow.json ...
import fs from "node:fs";
import path from "node:path";
import { chromium } from "playwright-core";

const [url, ...files] = process.argv.slice(2);
if (!url || !files.length) {
  console.error("usage: node missing_models.mjs URL workflow.json ...");
  process.exit(2);
}
const origin = new URL(url).origin;

// no "Get Started" template dialog over the page; the missing-models warning on (its default, said explicitly)
const settings = await fetch(`${origin}/api/settings`, {
  method: "POST",
  headers: { "Content-Type": "application/json" },
  body: JSON.stringify({ "Comfy.TutorialCompleted": true, "Comfy.Workflow.ShowMissingModelsWarning": true }),
});
if (!settings.ok) throw new Error(`POST /api/settings: HTTP ${settings.status}`);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-quic", "--no-first-run"],
});
const DIALOGS = "[role=dialog], [role=alertdialog], .p-dialog";
try {
  const page = await browser.newPage({ viewport: { width: 1600, height: 1000 } });
  let blocked = [];
  await page.route("**/*", (route) => {
    const target = route.request().url();
    if (new URL(target).origin === origin) return route.continue();
    blocked.push(target);
    return route.abort();
  });
  let pageErrors = [];
  page.on("pageerror", (e) => pageErrors.push(String(e)));

  await page.goto(url, { waitUntil: "domcontentloaded" });
  await page.waitForFunction(() => window.app?.graph && window.app.canvas && window.LiteGraph?.registered_node_types,
                             null, { timeout: 90000 });
  await page.waitForLoadState("networkidle", { timeout: 15000 }).catch(() => {});
  console.error("startup: " + JSON.stringify({ page_errors: pageErrors.splice(0), blocked: blocked.splice(0) }));

  const closeDialogs = async () => {
    for (let i = 0; i < 20 && (await page.locator(DIALOGS).count()); i++) {
      await page.keyboard.press("Escape");
      await page.evaluate(() => document.querySelectorAll(
        ".p-dialog-close-button, .p-dialog-header-close, [role=dialog] button[aria-label=Close]").forEach((b) => b.click()));
      await page.waitForTimeout(250);
    }
    const left = await page.locator(DIALOGS).count();
    if (left) throw new Error(`${left} dialog(s) would not close`);
  };

  for (const file of files) {
    const workflow = JSON.parse(fs.readFileSync(file, "utf8"));
    const name = path.basename(file, ".json");
    await closeDialogs();
    pageErrors = [];
    blocked = [];
    try {
      await page.evaluate((wf) => window.app.loadGraphData(wf), workflow);
    } catch (e) {
      pageErrors.push(String(e));
    }
    await page.waitForTimeout(1500);  // the dialog mounts and each entry asks for its file size
    const state = await page.evaluate((sel) => {
      const dialogs = [...document.querySelectorAll(sel)];
      const panel = document.querySelector(".comfy-missing-models");
      const missing = panel ? [...panel.querySelectorAll("[role=option], li")].map((option) => {
        const span = option.querySelector("span[title]");
        const error = option.querySelector(".p-message, .file-error");
        return { label: span?.textContent.trim() ?? option.innerText.trim(), url: span?.getAttribute("title") ?? null,
                 error: error ? error.innerText.replace(/\s+/g, " ").trim() : null };
      }) : [];
      return { missing, dialogs: dialogs.map((d) => d.innerText.replace(/\s+/g, " ").trim()) };
    }, DIALOGS);
    console.log(JSON.stringify({ name, ...state, blocked: [...new Set(blocked)], page_errors: pageErrors }));
  }
} finally {
  await browser.close();
}
