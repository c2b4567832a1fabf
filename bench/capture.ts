/**
 * Capture, per strategy: time (boot to healthy, migrate, quit, publish),
 * snapshot size on disk and in transit. Each run captures afresh
 * (forceCapture); the last capture stays for the resume sections.
 */
import { join } from "node:path";
import {
  captureOnly,
  openSnapshotStore,
  type EmulatorConfig,
  type PublishedSnapshot,
  type Strategy,
} from "../src/engine/index.js";
import { now, repeatTolerant, round, summarize, summarizeRecords, type Summary } from "./stats.js";
import { measureTransport, snapshotSize, type SnapshotSize, type TransportFigures } from "./transport.js";
import type { BenchEnv } from "./setup.js";

export interface CaptureRun {
  totalMs: number;
  phases: Record<string, number>;
  size: SnapshotSize;
  transport: TransportFigures;
}

export interface CaptureResult {
  strategy: Strategy;
  ramMiB: number;
  key: string;
  totalMs: Summary;
  phases: Record<string, Summary>;
  /** Of the last capture (sizes barely vary between runs). */
  size: SnapshotSize;
  transport: {
    packMs: Summary;
    compressedBytes: number;
    readBytes: number;
    holeMap: string;
    unpackMs: Summary;
    extractMs: Summary;
    publishMs: Summary;
    plainZstd1Ms: Summary | undefined;
    plainZstd1Bytes: number | undefined;
  };
  runs: CaptureRun[];
  /** Runs that failed (and were retried), with why. */
  failures: string[];
}

/** One capture (forced), then its sizes and transport figures. */
export async function captureOnce(
  env: BenchEnv,
  config: EmulatorConfig,
  scratch: string,
): Promise<{ snapshot: PublishedSnapshot; run: CaptureRun }> {
  const t0 = now();
  const r = await captureOnly({ ...config, forceCapture: true }, () => undefined);
  const totalMs = round(now() - t0);
  await env.kill(config);
  const snapshot = await openSnapshotStore(config.snapshotDir).lookup(r.key);
  if (!snapshot) throw new Error(`capture of ${r.key} published nothing`);
  const ram = snapshot.manifest.files.find((f) => f.role === "ram");
  const transport = await measureTransport(
    snapshot.dir,
    ram ? join(snapshot.dir, ram.name) : undefined,
    join(scratch, "transport"),
  );
  return { snapshot, run: { totalMs, phases: r.timings, size: snapshotSize(snapshot.dir), transport } };
}

export async function captureSection(
  env: BenchEnv,
  strategy: Strategy,
  ramMiB: number,
  runs: number,
  scratch: string,
  log: (m: string) => void,
): Promise<CaptureResult> {
  const config = env.config({ strategy, ramMiB, snapshotRamMiB: ramMiB });
  let key = "";
  const failures: string[] = [];
  const results = await repeatTolerant(
    runs,
    async (i) => {
      const { snapshot, run } = await captureOnce(env, config, scratch);
      key = snapshot.key;
      log(
        `capture ${strategy} ${ramMiB} MiB run ${i + 1}/${runs}: ${run.totalMs} ms, ` +
          `pack ${run.transport.packMs} ms, zstd -1 ${run.transport.plainZstd1?.ms ?? "-"} ms`,
      );
      return run;
    },
    failures,
  );
  const last = results[results.length - 1]!;
  const t = results.map((r) => r.transport);
  const plain = t.flatMap((x) => (x.plainZstd1 ? [x.plainZstd1.ms] : []));
  return {
    strategy,
    ramMiB,
    key,
    totalMs: summarize(results.map((r) => r.totalMs)),
    phases: summarizeRecords(results.map((r) => r.phases)),
    size: last.size,
    transport: {
      packMs: summarize(t.map((x) => x.packMs)),
      compressedBytes: last.transport.compressedBytes,
      readBytes: last.transport.readBytes,
      holeMap: last.transport.holeMap,
      unpackMs: summarize(t.map((x) => x.unpackMs)),
      extractMs: summarize(t.map((x) => x.extractMs)),
      publishMs: summarize(t.map((x) => x.publishMs)),
      plainZstd1Ms: plain.length ? summarize(plain) : undefined,
      plainZstd1Bytes: last.transport.plainZstd1?.compressedBytes,
    },
    runs: results,
    failures,
  };
}
