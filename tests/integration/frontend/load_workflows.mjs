// Loads workflow JSON files in ComfyUI's real frontend (headless Chromium) and reports, per workflow,
// how many nodes loaded, which node types the frontend does not know, and whether a
// missing-nodes warning appeared. Usage: node load_workflows.mjs URL OUT_DIR workflow.json ...
import fs from "node:fs";
import path from "node:path";
import { chromium } from "playwright-core";

const [url, outDir, ...files] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--disable-quic", "--no-first-run"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1600, height: 1000 } });
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(url, { waitUntil: "domcontentloaded" });
  await page.waitForFunction(() => window.app && window.app.graph && window.LiteGraph, null, { timeout: 90000 });
  for (const file of files) {
    const workflow = JSON.parse(fs.readFileSync(file, "utf8"));
    const name = path.basename(file, ".json");
    const result = await page.evaluate(async (wf) => {
      await window.app.loadGraphData(wf);
      await new Promise((r) => setTimeout(r, 1500));
      const nodes = window.app.graph._nodes ?? window.app.graph.nodes;
      const known = window.LiteGraph.registered_node_types;
      const text = document.body.innerText;
      return {
        nodes_loaded: nodes.length,
        unknown_types: nodes.filter((n) => !(n.type in known)).map((n) => n.type),
        missing_dialog: /nodes? (are|is) missing|missing node/i.test(text),
      };
    }, workflow);
    await page.screenshot({ path: path.join(outDir, `${name}.png`) });
    console.log(JSON.stringify({ name, nodes_expected: workflow.nodes.length, ...result, errors: errors.splice(0) }));
    await page.evaluate(() => document.querySelectorAll(".p-dialog-close-button, .p-dialog-header-close").forEach((b) => b.click()));
  }
} finally {
  await browser.close();
}
