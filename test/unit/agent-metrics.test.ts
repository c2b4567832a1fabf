import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { agentMetrics } from "../../src/controller/agent/agent-metrics.js";

describe("the agent's metrics", () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  it("report the node store's size when scraped (0 before the agent knows its store)", async () => {
    const store = mkdtempSync(join(tmpdir(), "hxe-agent-metrics-"));
    dirs.push(store);
    writeFileSync(join(store, "blob"), Buffer.alloc(1 << 20, 1));
    const known: { dir?: string } = {};
    const m = agentMetrics(() => known.dir);
    expect(await m.render()).toMatch(/^hexclave_emulator_store_bytes 0$/m);
    known.dir = store;
    const text = await m.render();
    const bytes = Number(/^hexclave_emulator_store_bytes (\d+)/m.exec(text)?.[1]);
    expect(bytes).toBeGreaterThanOrEqual(1 << 20);
    expect(text).toContain('hexclave_emulator_store_snapshots{in_use="false"} 0');
    expect(m.contentType).toMatch(/^text\/plain/);
  });
});
