/**
 * The verbs of hexclave-emulator: each turns a config into an engine call and
 * a report. Each verb imports what it uses when it runs: loading every
 * engine module up front cost ~275 ms of the command's start (--help too).
 */
import type { EmulatorConfig } from "../config/index.js";
import type { EventSink } from "../lifecycle/events.js";
import type { StartResult } from "../lifecycle/start.js";

const stopModule = async () => {
  const [{ stopVm }, { runPaths }] = await Promise.all([
    import("../lifecycle/stop.js"),
    import("../lifecycle/run-dir.js"),
  ]);
  return { stopVm, runPaths };
};

export interface VerbOutcome {
  code: number;
  result: unknown;
  human?: string;
}

export interface Verb {
  name: string;
  summary: string;
  flags: readonly string[] | "all";
  run(
    config: EmulatorConfig,
    sink: EventSink,
    extra: Record<string, string | boolean | undefined>,
  ): Promise<VerbOutcome>;
}

function describeStart(r: StartResult): string {
  const lines = [
    `emulator up in ${(r.totalMs / 1000).toFixed(1)} s (${r.bootMode}${r.fallbackReason ? `, because ${r.fallbackReason}` : ""})`,
    `  QEMU ${r.qemuVersion}, ${r.accelerator}${r.strategy ? `, snapshot strategy ${r.strategy}` : ""}`,
    ...Object.entries(r.urls).map(([k, v]) => `  ${k.padEnd(10)} ${v}`),
    `  publishable client key in ${r.publishableKeyFile}`,
  ];
  for (const s of r.skipped ?? [])
    lines.push(`  skipped (not offered by this image): ${s.step}: ${s.reason}`);
  if (r.placeholderSecrets)
    lines.push("  WARNING: placeholder secrets are live: do not expose this instance");
  return lines.join("\n");
}

const ALL = "all" as const;
const STOP_FLAGS = ["run-dir", "stop-grace"];

export const VERBS = {
  start: {
    name: "start",
    summary: "start the emulator: resume a snapshot, or cold-boot (capturing one first when allowed)",
    flags: ALL,
    async run(config, sink) {
      const { start } = await import("../lifecycle/start.js");
      const r = await start(config, sink);
      return { code: 0, result: r, human: describeStart(r) };
    },
  },
  stop: {
    name: "stop",
    summary: "stop the emulator: agent power-off, then ACPI, then SIGTERM, then SIGKILL",
    flags: STOP_FLAGS,
    async run(config, sink) {
      const { stopVm, runPaths } = await stopModule();
      const r = await stopVm(runPaths(config.runDir), config.stopGraceSec, sink);
      return {
        code: 0,
        result: r,
        human: r.wasRunning ? `emulator stopped (${r.via})` : "emulator was not running",
      };
    },
  },
  status: {
    name: "status",
    summary: "the VM and each service; exit code 1 when anything is down",
    flags: ["run-dir", "bind"],
    async run(config) {
      const { status } = await import("../lifecycle/status.js");
      const r = await status(config);
      return { code: r.ok ? 0 : 1, result: r, human: r.human };
    },
  },
  capture: {
    name: "capture",
    summary: "capture a snapshot for this host and config (skipped when present; --force replaces it)",
    flags: ALL,
    async run(config, sink) {
      const { captureOnly } = await import("../lifecycle/capture-verb.js");
      const r = await captureOnly(config, sink);
      return {
        code: 0,
        result: r,
        human: r.skipped
          ? `snapshot ${r.key} already present (use --force to replace it)`
          : `snapshot ${r.key} captured`,
      };
    },
  },
  reset: {
    name: "reset",
    summary: "stop the emulator and delete its run directory (snapshots are kept)",
    flags: STOP_FLAGS,
    async run(config, sink) {
      const [{ stopVm, runPaths }, { rmSync }] = await Promise.all([stopModule(), import("node:fs")]);
      await stopVm(runPaths(config.runDir), config.stopGraceSec, sink);
      rmSync(config.runDir, { recursive: true, force: true });
      return { code: 0, result: { reset: config.runDir }, human: `emulator state reset (${config.runDir})` };
    },
  },
  bench: {
    name: "bench",
    summary: "stop, start, and report per-phase timings as JSON",
    flags: ALL,
    async run(config, sink) {
      const [{ stopVm, runPaths }, { start }] = await Promise.all([
        stopModule(),
        import("../lifecycle/start.js"),
      ]);
      await stopVm(runPaths(config.runDir), config.stopGraceSec, sink);
      const r = await start(config, sink);
      return {
        code: 0,
        result: { bootMode: r.bootMode, totalMs: r.totalMs, timings: r.timings },
        human: JSON.stringify({ bootMode: r.bootMode, totalMs: r.totalMs, timings: r.timings }, null, 2),
      };
    },
  },
  gc: {
    name: "gc",
    summary:
      "clean the snapshot store: work of dead captures, then least recently used snapshots no VM runs from, down to --store-budget",
    flags: ["snapshot-dir", "store-budget"],
    async run(config) {
      const { describeGc, gcStore } = await import("../snapshot/gc-verb.js");
      const r = await gcStore(config.snapshotDir, config.storeBudget);
      return { code: 0, result: r, human: describeGc(r, config.storeBudget) };
    },
  },
  pull: {
    name: "pull",
    summary:
      "download the image of a release (--release <tag> or --url <url>) into the image path, checksum-verified",
    flags: ["image", "arch", "release", "url"],
    async run(config, sink, extra) {
      const { progressPrinter, pullImage, releaseAssetUrl } = await import("../image/pull.js");
      const url =
        typeof extra.url === "string"
          ? extra.url
          : releaseAssetUrl(
              typeof extra.release === "string" ? extra.release : "emulator-latest",
              config.arch,
              process.env.HEXCLAVE_EMULATOR_RELEASE_BASE,
            );
      sink({ kind: "info", message: `downloading ${url}` });
      const r = await pullImage(
        url,
        config.image,
        progressPrinter((s) => process.stderr.write(s), process.stderr.isTTY === true),
      );
      if (process.stderr.isTTY) process.stderr.write("\n");
      const how = r.checksumVerified ? "sha256 verified" : "the release publishes no checksum";
      return {
        code: 0,
        result: r,
        human: `${r.path}: ${(r.bytes / 1024 / 1024).toFixed(1)} MiB in ${(r.ms / 1000).toFixed(1)} s (${how})`,
      };
    },
  },
} satisfies Record<string, Verb>;
