// Loads workflow JSON files in ComfyUI's real frontend (the one the server serves at its root URL) in
// headless Chromium, one browser session for all of them, and prints one JSON line per workflow:
//   {name, nodes_expected, nodes_loaded, links_expected, links_loaded, unknown_types, type_mismatches,
//    widget_mismatches, missing_dialog, dialogs, page_errors, errors, screenshot}
// unknown_types: loaded nodes whose type is not in LiteGraph.registered_node_types;
// missing_dialog: the frontend's "Some Nodes Are Missing" warning (or any dialog mentioning missing
// nodes) was open after the load; dialogs: the text of every dialog open after the load (missing
// models, "Unable to load workflow", ...); page_errors: uncaught exceptions during the load;
// errors: console errors during the load (page_errors included). Startup noise (errors before the
// first load) goes to stderr. Requests to anything but the server are aborted (closed network).
// Usage: node load_workflows.mjs URL OUT_DIR workflow.json ...
import fs from "node:fs";
import path from "node:path";
import { chromium } from "playwright-core";

const [url, outDir, ...files] = process.argv.slice(2);
if (!url || !outDir || !files.length) {
  console.error("usage: node load_workflows.mjs URL OUT_DIR workflow.json ...");
  process.exit(2);
}
fs.mkdirSync(outDir, { recursive: true });
const origin = new URL(url).origin;

// A fresh user directory makes the frontend open its "Get Started with a Template" dialog, which would
// cover the screenshots; say the tutorial is done, and make sure the missing-nodes warning is on.
const settings = await fetch(`${origin}/api/settings`, {
  method: "POST",
  headers: { "Content-Type": "application/json" },
  body: JSON.stringify({ "Comfy.TutorialCompleted": true, "Comfy.Workflow.ShowMissingNodesWarning": true }),
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
  await page.route("**/*", (route) =>
    new URL(route.request().url()).origin === origin ? route.continue() : route.abort());
  let errors = [];
  let pageErrors = [];
  page.on("pageerror", (e) => { pageErrors.push(String(e)); errors.push(String(e)); });
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });

  await page.goto(url, { waitUntil: "domcontentloaded" });
  await page.waitForFunction(() => window.app?.graph && window.app.canvas && window.LiteGraph?.registered_node_types,
                             null, { timeout: 90000 });
  await page.waitForLoadState("networkidle", { timeout: 15000 }).catch(() => {});
  const startup = { errors: errors.splice(0), page_errors: pageErrors.splice(0),
                    node_types: await page.evaluate(() => Object.keys(window.LiteGraph.registered_node_types).length) };
  console.error("startup: " + JSON.stringify(startup));

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
    await closeDialogs();  // each workflow's dialogs are its own
    errors = [];
    pageErrors = [];
    let loadError = null;
    try {
      await page.evaluate((wf) => window.app.loadGraphData(wf), workflow);
    } catch (e) {
      loadError = String(e);
    }
    // let the dialog mount, widgets and media previews settle, and the canvas draw
    await page.waitForTimeout(1000);
    await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
    const state = await page.evaluate(([wf, sel]) => {
      const graph = window.app.graph;
      const nodes = graph._nodes ?? graph.nodes;
      const known = window.LiteGraph.registered_node_types;
      const links = graph.links instanceof Map ? graph.links.size : Object.keys(graph.links ?? {}).length;
      const byId = new Map(nodes.map((n) => [String(n.id), n]));
      const saved = new Map(graph.serialize().nodes.map((n) => [String(n.id), n]));
      const typeMismatches = [];
      const widgetMismatches = [];
      for (const n of wf.nodes) {
        const got = byId.get(String(n.id));
        if (!got || got.type !== n.type) {
          typeMismatches.push({ id: n.id, expected: n.type, loaded: got?.type ?? null });
          continue;
        }
        const values = saved.get(String(n.id))?.widgets_values ?? [];
        if (JSON.stringify(values) !== JSON.stringify(n.widgets_values ?? []))
          widgetMismatches.push({ id: n.id, type: n.type, expected: n.widgets_values ?? [], loaded: values });
      }
      const dialogs = [...document.querySelectorAll(sel)].map((d) => d.innerText.replace(/\s+/g, " ").trim());
      return {
        nodes_loaded: nodes.length,
        links_loaded: links,
        unknown_types: [...new Set(nodes.filter((n) => !(n.type in known)).map((n) => n.type))],
        type_mismatches: typeMismatches,
        widget_mismatches: widgetMismatches,
        missing_dialog: dialogs.some((t) => /missing/i.test(t) && /node/i.test(t)),
        dialogs,
      };
    }, [workflow, DIALOGS]);
    const screenshot = path.join(outDir, `${name}.png`);
    await page.screenshot({ path: screenshot });
    if (loadError) { pageErrors.push(loadError); errors.push(loadError); }
    console.log(JSON.stringify({
      name, nodes_expected: workflow.nodes.length, links_expected: (workflow.links ?? []).length, ...state,
      page_errors: pageErrors, errors, screenshot,
    }));
  }
} finally {
  await browser.close();
}
