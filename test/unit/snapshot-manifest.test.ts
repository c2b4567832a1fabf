import { describe, expect, it } from "vitest";
import { EngineError } from "../../src/engine/errors.js";
import { SNAPSHOT_FORMAT_VERSION, snapshotKey } from "../../src/engine/snapshot/key.js";
import type { SnapshotKeyParts } from "../../src/engine/snapshot/key.js";
import { parseManifest, serializeManifest } from "../../src/engine/snapshot/manifest.js";
import type { SnapshotManifest } from "../../src/engine/snapshot/manifest.js";

const keyParts: SnapshotKeyParts = {
  formatVersion: SNAPSHOT_FORMAT_VERSION,
  arch: "amd64",
  accelerator: "kvm",
  qemuVersion: "10.0.13",
  machineType: "pc-q35-10.0",
  cpuModel: "host",
  cpuFingerprint: "c0ffee",
  ramMiB: 4096,
  cpus: 2,
  imageDigest: "12".repeat(32),
  firmwareDigest: "none",
  layoutHash: "lh",
  strategy: "mapped-ram",
  hostPorts: { dashboard: 8101, backend: 8102, minio: 8103, inbucket: 8104, mockOauth: 8105 },
  portPrefix: "81",
};

function manifest(): SnapshotManifest {
  return {
    formatVersion: SNAPSHOT_FORMAT_VERSION,
    key: snapshotKey(keyParts),
    keyParts,
    strategy: "mapped-ram",
    createdAt: "2025-01-01T12:00:00.000Z",
    qemuVersion: "10.0.13",
    files: [
      { name: "device-state", bytes: 1234, digest: `nzb1m-sha256:${"ab".repeat(32)}`, role: "device-state" },
      { name: "ram", bytes: 4 * 1024 ** 3, digest: `nzb1m-sha256:${"cd".repeat(32)}`, role: "ram" },
    ],
    captureTimings: { boot: 9000, migrate: 1200 },
    guest: { kernel: "6.1", agent: "qga 7.2", healthy: true },
    engineVersion: "0.1.0",
  };
}

function problemOf(value: unknown): string {
  const r = parseManifest(value);
  expect(r).toBeInstanceOf(EngineError);
  expect((r as EngineError).code).toBe("SNAPSHOT_MANIFEST_INVALID");
  return (r as EngineError).message;
}

describe("manifest", () => {
  it("round-trips through its serialisation", () => {
    const m = manifest();
    expect(parseManifest(serializeManifest(m))).toEqual(m);
  });

  it("says when the text is not JSON", () => {
    expect(problemOf("{")).toMatch(/not JSON/);
  });

  it("names a missing field", () => {
    const { engineVersion: _drop, ...m } = manifest();
    expect(problemOf(m)).toMatch(/engineVersion/);
  });

  it("names the file entry with a bad digest or role", () => {
    const m = manifest();
    m.files[1]!.digest = "xyz";
    (m.files[0] as { role: string }).role = "swap";
    const message = problemOf(m);
    expect(message).toMatch(/files\.1\.digest/);
    expect(message).toMatch(/files\.0\.role/);
  });

  it("takes no plain sha256 for a file digest, and no manifest of the sha256 format", () => {
    const m = manifest();
    m.files[0]!.digest = "ab".repeat(32);
    expect(problemOf(m)).toMatch(/files\.0\.digest/);
    const { digest, ...rest } = manifest().files[0]!;
    const old = { ...manifest(), files: [{ ...rest, sha256: digest.slice("nzb1m-sha256:".length) }] };
    expect(problemOf(old)).toMatch(/files\.0/);
  });

  it("rejects a key that its key parts do not derive", () => {
    expect(problemOf({ ...manifest(), key: "hxe-v1-amd64-kvm-q10.0.13-000000000000000000000000" })).toMatch(
      /key: is .* but keyParts derive/,
    );
  });

  it("rejects a strategy or QEMU version that contradicts the key parts", () => {
    expect(problemOf({ ...manifest(), strategy: "stream" })).toMatch(/strategy/);
    expect(problemOf({ ...manifest(), qemuVersion: "7.2.22" })).toMatch(/qemuVersion/);
  });

  it("rejects a file name that could escape the snapshot directory, and duplicates", () => {
    const m = manifest();
    m.files[0]!.name = "../../etc/passwd";
    expect(problemOf(m)).toMatch(/files\.0\.name/);
    const d = manifest();
    d.files[1]!.name = "device-state";
    expect(problemOf(d)).toMatch(/listed twice/);
  });

  it("rejects another format version", () => {
    expect(problemOf({ ...manifest(), formatVersion: 99 })).toMatch(/formatVersion/);
  });
});
