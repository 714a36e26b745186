/// <reference lib="dom" />
/**
 * The dashboard in a real browser (Debian's Chromium, headless, driven by playwright-core) against
 * a real node (`startNode`: SQLite log, projections, agent running real processes, HTTP on
 * 127.0.0.1:0): the page loads and shows the node and its tasks; a scale made through the manager
 * appears without a reload; scrubbing the timeline back shows the old state under the history
 * banner; clicking a task opens its provenance, naming the scheduler's decision; two points give
 * a diff.
 *
 * Screenshots go to `$SHOAL_SCREENSHOT_DIR` when set (kept), else to a temporary directory that is
 * removed afterwards.
 */
import assert from "node:assert/strict";
import { type BrowserContext, chromium, type Page } from "playwright-core";
import { startNode } from "../../node/daemon.ts";
import { ServiceSpec, TaskState } from "../../events/schema.ts";
import type { Manager } from "../../actors/manager.ts";
import { nodeName } from "../../actors/state.ts";

/** Debian's Chromium (`apt-get install chromium`): playwright never downloads a browser here. */
const CHROMIUM = "/usr/bin/chromium";

async function until<T>(what: string, fn: () => T | undefined | false, ms = 20_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function running(m: Manager, name: string): number {
  const svc = m.state.serviceByName(name);
  if (!svc) return 0;
  return [...m.state.tasksOf(svc.id)].filter((t) =>
    t.status.state === TaskState.running && t.desiredState === TaskState.running
  ).length;
}

/** Waits until the log stops growing for a moment (the projections and agent are idle). */
async function settled(m: Manager): Promise<number> {
  let index = -1;
  while (index !== m.state.index) {
    index = m.state.index;
    await new Promise((r) => setTimeout(r, 150));
  }
  return index;
}

async function launch(profile: string): Promise<BrowserContext> {
  try {
    await Deno.stat(CHROMIUM);
  } catch {
    throw new Error(`${CHROMIUM} is missing: install it with apt-get install -y chromium`);
  }
  return await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1440, height: 900 },
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}

/** How many task cards of `service` the page shows, in `state` if given. */
function cards(page: Page, service: string, state?: string): Promise<number> {
  const sel = `.task[data-service-name="${service}"]${state ? `[data-state="${state}"]` : ""}`;
  return page.locator(sel).count();
}

async function waitForCards(page: Page, service: string, state: string, n: number) {
  await page.waitForFunction(
    ([svc, st, count]) =>
      document.querySelectorAll(`.task[data-service-name="${svc}"][data-state="${st}"]`)
        .length === count,
    [service, state, n] as const,
    { timeout: 20_000 },
  );
}

Deno.test({
  name: "dashboard: live view, scale without reload, timeline history, provenance, diff",
  // playwright-core keeps node-compat sockets and timers of its own between steps.
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const dataDir = await Deno.makeTempDir({ prefix: "shoal-e2e-node-" });
    const profile = await Deno.makeTempDir({ prefix: "shoal-e2e-chromium-" });
    const keepShots = Deno.env.get("SHOAL_SCREENSHOT_DIR");
    const shots = keepShots ?? await Deno.makeTempDir({ prefix: "shoal-e2e-shots-" });
    await Deno.mkdir(shots, { recursive: true });
    const node = await startNode({
      dataDir,
      listenAddr: "127.0.0.1:0",
      synchronous: "normal",
      docker: false,
    });
    const m = node.manager;
    let ctx: BrowserContext | undefined;
    const problems: string[] = [];
    try {
      await m.execute({
        kind: "CreateService",
        spec: ServiceSpec.parse({
          name: "web",
          task: {
            runtime: {
              kind: "process",
              command: "/bin/sleep",
              args: ["600"],
              stopGracePeriod: 1_000,
            },
            restart: { condition: "any", delay: 0 },
          },
          mode: { kind: "replicated", replicas: 1 },
        }),
      }, { by: "user:service.create" });
      await until("web.1 running", () => running(m, "web") === 1);
      const before = await settled(m);
      const name = nodeName(m.state.nodes.get(node.nodeId)!);

      ctx = await launch(profile);
      const page = await ctx.newPage();
      page.on("pageerror", (err) => problems.push(`page error: ${err.message}`));
      page.on("console", (msg) => {
        if (msg.type() === "error") problems.push(`console error: ${msg.text()}`);
      });

      await t.step("the page loads and shows the node and its task", async () => {
        await page.goto(`${node.apiUrl}/`);
        assert.equal(new URL(page.url()).pathname, "/ui/", "/ leads to the dashboard");
        const column = page.locator(`.node[data-node="${name}"]`);
        await column.waitFor();
        const header = await column.locator("header").innerText();
        assert.match(header, /manager/);
        assert.match(header, /active/);
        assert.match(header, /ready/);
        assert.match(header, /leader/);
        await waitForCards(page, "web", "running", 1);
        assert.equal(await column.locator('.task[data-task-name="web.1"]').count(), 1);
        const row = page.locator('tr[data-service="web"]');
        assert.match(await row.innerText(), /1\/1/);
        await page.locator("#conn.up").waitFor();
      });

      await t.step("a scale through the manager appears live, without a reload", async () => {
        await page.evaluate(() => {
          (globalThis as unknown as { notReloaded: boolean }).notReloaded = true;
        });
        await m.execute({ kind: "ScaleService", service: "web", replicas: 3 }, {
          by: "user:service.scale",
        });
        await waitForCards(page, "web", "running", 3);
        await page.waitForFunction(() =>
          document.querySelector('tr[data-service="web"]')?.getAttribute("data-running") === "3"
        );
        assert.equal(
          await page.evaluate(() =>
            (globalThis as unknown as { notReloaded?: boolean }).notReloaded
          ),
          true,
          "the page was not reloaded",
        );
        assert.match(await page.locator("#activity").innerText(), /service\.scale/);
        assert.equal(await page.locator("#history-banner").isVisible(), false);
      });

      await settled(m);
      const last = m.state.index;
      await page.waitForFunction((i) => document.body.dataset.index === String(i), last);

      await t.step("the keyboard steps the timeline back one entry", async () => {
        await page.locator("#timeline").focus();
        await page.keyboard.press("ArrowLeft");
        await page.waitForFunction((i) => document.body.dataset.index === String(i), last - 1);
        assert.match(await page.locator("#history-banner").innerText(), new RegExp(`#${last - 1}`));
      });

      await t.step("scrubbing back shows the old state under the history banner", async () => {
        await page.locator("#timeline").evaluate((el, v) => {
          const input = el as HTMLInputElement;
          input.value = String(v);
          input.dispatchEvent(new Event("input", { bubbles: true }));
          input.dispatchEvent(new Event("change", { bubbles: true }));
        }, before);
        await page.waitForFunction((i) => document.body.dataset.index === String(i), before);
        const banner = page.locator("#history-banner");
        assert.ok(await banner.isVisible());
        const text = await banner.innerText();
        assert.match(text, new RegExp(`Viewing history at #${before}\\b`));
        assert.match(text, /Back to live/);
        assert.equal(await cards(page, "web"), 1, "one task then");
        assert.equal(await cards(page, "web", "running"), 1);
        assert.match(await page.locator('tr[data-service="web"]').innerText(), /1\/1/);
        assert.match(await page.locator("#mode").innerText(), /HISTORY/);
      });

      await t.step(
        "clicking a task shows its provenance with the scheduler's decision",
        async () => {
          await page.locator('.task[data-task-name="web.1"]').click();
          const panel = page.locator("#provenance");
          await panel.waitFor();
          const text = await panel.innerText();
          assert.match(text, /task web\.1/);
          assert.match(text, /SCHEDULER'S DECISION|Scheduler's decision/i);
          assert.match(text, new RegExp(`The scheduler chose ${name}`));
          assert.match(text, /1 node considered/);
          assert.match(text, new RegExp(`Passed every filter: ${name}`));
          assert.match(text, /TaskAssigned/);
          assert.match(text, /user:service\.create/, "back to the user's command");
          assert.equal(
            await panel.locator(`.decision[data-decision="${name}"]`).count() >= 1,
            true,
          );
          await page.screenshot({ path: `${shots}/dashboard-history-provenance.png` });
        },
      );

      await t.step("two points on the timeline give a diff", async () => {
        await page.locator("#drawer-close").click();
        await page.locator("#set-a").click();
        await page.locator("#back-live").click();
        await page.waitForFunction(() => document.body.dataset.live === "true");
        await waitForCards(page, "web", "running", 3);
        assert.equal(await page.locator("#history-banner").isVisible(), false);
        await page.locator("#set-b").click();
        await page.locator("#compare").click();
        const panel = page.locator("#diff");
        await panel.waitFor();
        const created = await panel.locator('li.created[data-kind="task"]').evaluateAll((els) =>
          els.map((e) => (e as HTMLElement).dataset.name)
        );
        assert.deepEqual(created.sort(), ["web.2", "web.3"]);
        assert.match(await panel.innerText(), /spec\.mode\.replicas: 1 → 3/);
        await page.screenshot({ path: `${shots}/dashboard-live-diff.png` });
        await page.locator("#drawer-close").click();
        await page.screenshot({ path: `${shots}/dashboard-live.png` });
      });

      assert.deepEqual(problems, [], "no script errors in the page");
      console.log(`dashboard screenshots: ${shots}`);
    } finally {
      await ctx?.close();
      await node.close();
      await Deno.remove(dataDir, { recursive: true });
      await Deno.remove(profile, { recursive: true }).catch(() => {});
      if (keepShots === undefined) await Deno.remove(shots, { recursive: true });
    }
  },
});
