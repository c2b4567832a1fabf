/**
 * The agent's /metrics: the node store it shares with every other emulator
 * on the node (its size, its snapshots, those in use), read when scraped.
 * Every agent on a node reports the same store: aggregate by node (max), not
 * by sum.
 */
import { Gauge, Registry } from "prom-client";
import { storeUsage } from "../../engine/index.js";

export interface AgentMetrics {
  render(): Promise<string>;
  contentType: string;
}

export function agentMetrics(storeDir: () => string | undefined): AgentMetrics {
  const registers = [new Registry()];
  const registry = registers[0]!;
  // One read of the store per scrape, shared by both gauges.
  let pending: ReturnType<typeof storeUsage> | undefined;
  const read = () => {
    const dir = storeDir();
    if (!dir) return undefined;
    pending ??= storeUsage(dir).finally(() => (pending = undefined));
    return pending;
  };
  new Gauge({
    name: "hexclave_emulator_store_bytes",
    help: "Disk the node's snapshot store takes (allocated bytes; the same for every agent of a node).",
    registers,
    async collect() {
      const u = await read();
      if (u) this.set(u.totalBytes);
    },
  });
  new Gauge({
    name: "hexclave_emulator_store_snapshots",
    help: "Snapshots in the node's store, by whether a running VM uses them.",
    labelNames: ["in_use"],
    registers,
    async collect() {
      const u = await read();
      if (!u) return;
      const used = u.snapshots.filter((s) => s.inUse).length;
      this.set({ in_use: "true" }, used);
      this.set({ in_use: "false" }, u.snapshots.length - used);
    },
  });
  return { render: () => registry.metrics(), contentType: registry.contentType };
}
