import { describe, expect, it } from "vitest";
import {
  SNAPSHOT_FORMAT_VERSION,
  describeKeyDifference,
  diffKeyParts,
  snapshotKey,
} from "../../src/engine/snapshot/key.js";
import type { SnapshotKeyParts } from "../../src/engine/snapshot/key.js";

function parts(): SnapshotKeyParts {
  return {
    formatVersion: SNAPSHOT_FORMAT_VERSION,
    arch: "amd64",
    accelerator: "tcg",
    qemuVersion: "7.2.22",
    machineType: "pc-q35-7.2",
    cpuModel: "max",
    cpuFingerprint: "f00d",
    ramMiB: 4096,
    cpus: 2,
    imageDigest: "ab".repeat(32),
    firmwareDigest: "none",
    layoutHash: "layout-1",
    strategy: "template",
    hostPorts: { dashboard: 8101, backend: 8102, minio: 8103, inbucket: 8104, mockOauth: 8105 },
    portPrefix: "81",
  };
}

/** One changed value for every part, nested ports included. */
const changes: [string, (p: SnapshotKeyParts) => void][] = [
  ["formatVersion", (p) => (p.formatVersion = 2)],
  ["arch", (p) => (p.arch = "arm64")],
  ["accelerator", (p) => (p.accelerator = "kvm")],
  ["qemuVersion", (p) => (p.qemuVersion = "10.0.13")],
  ["machineType", (p) => (p.machineType = "pc-q35-10.0")],
  ["cpuModel", (p) => (p.cpuModel = "host")],
  ["cpuFingerprint", (p) => (p.cpuFingerprint = "beef")],
  ["ramMiB", (p) => (p.ramMiB = 2048)],
  ["cpus", (p) => (p.cpus = 4)],
  ["imageDigest", (p) => (p.imageDigest = "cd".repeat(32))],
  ["firmwareDigest", (p) => (p.firmwareDigest = "ef".repeat(32))],
  ["layoutHash", (p) => (p.layoutHash = "layout-2")],
  ["strategy", (p) => (p.strategy = "mapped-ram")],
  ["hostPorts.dashboard", (p) => (p.hostPorts.dashboard = 9101)],
  ["hostPorts.backend", (p) => (p.hostPorts.backend = 9102)],
  ["hostPorts.minio", (p) => (p.hostPorts.minio = 9103)],
  ["hostPorts.inbucket", (p) => (p.hostPorts.inbucket = 9104)],
  ["hostPorts.mockOauth", (p) => (p.hostPorts.mockOauth = 9105)],
  ["portPrefix", (p) => (p.portPrefix = "91")],
];

describe("snapshot key", () => {
  it("is stable, readable and safe as a path component and cache key", () => {
    const key = snapshotKey(parts());
    expect(key).toBe(snapshotKey(parts()));
    expect(key).toMatch(/^hxe-v1-amd64-tcg-q7\.2\.22-[0-9a-f]{24}$/);
  });

  it("does not depend on property order", () => {
    const p = parts();
    const reordered = Object.fromEntries(Object.entries(p).reverse()) as SnapshotKeyParts;
    reordered.hostPorts = Object.fromEntries(
      Object.entries(p.hostPorts).reverse(),
    ) as SnapshotKeyParts["hostPorts"];
    expect(snapshotKey(reordered)).toBe(snapshotKey(p));
  });

  it("covers every part (the test list names them all)", () => {
    const named = new Set(changes.map(([n]) => n.split(".")[0]));
    expect([...named].sort()).toEqual(Object.keys(parts()).sort());
  });

  it.each(changes)("changes when %s changes", (_name, change) => {
    const p = parts();
    change(p);
    expect(snapshotKey(p)).not.toBe(snapshotKey(parts()));
  });

  it("keeps odd version strings filesystem-safe", () => {
    const p = parts();
    p.qemuVersion = "7.2.22 (Debian 1:7.2+dfsg-7+deb12u7)";
    expect(snapshotKey(p)).toMatch(/^[a-z0-9._-]+$/);
  });
});

describe("key diff", () => {
  it("explains a miss by naming exactly the parts that differ", () => {
    const wanted = parts();
    wanted.qemuVersion = "10.0.13";
    wanted.hostPorts.minio = 9000;
    const diffs = diffKeyParts(parts(), wanted);
    expect(diffs.map(describeKeyDifference)).toEqual([
      "hostPorts.minio: 8103 → 9000",
      "qemuVersion: 7.2.22 → 10.0.13",
    ]);
  });

  it.each(changes)("reports %s and nothing else", (name, change) => {
    const p = parts();
    change(p);
    expect(diffKeyParts(parts(), p).map((d) => d.part)).toEqual([name]);
  });

  it("is empty for equal parts", () => {
    expect(diffKeyParts(parts(), parts())).toEqual([]);
  });
});
