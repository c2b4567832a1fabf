import { SNAPSHOT_FORMAT_VERSION, type SnapshotKeyParts } from "../../src/engine/snapshot/key.js";

/** The key parts of a small TCG test snapshot; `over` changes what a test needs apart. */
export function testKeyParts(over: Partial<SnapshotKeyParts> = {}): SnapshotKeyParts {
  return {
    formatVersion: SNAPSHOT_FORMAT_VERSION,
    arch: "amd64",
    accelerator: "tcg",
    qemuVersion: "10.0.13",
    machineType: "pc-q35-10.0",
    cpuModel: "qemu64",
    cpuFingerprint: "tcg:qemu64",
    ramMiB: 512,
    cpus: 1,
    imageDigest: "ab".repeat(32),
    firmwareDigest: "none",
    layoutHash: "lh",
    strategy: "template",
    hostPorts: { dashboard: 27400, backend: 27401, minio: 27402, inbucket: 27403, mockOauth: 27404 },
    portPrefix: "81",
    ...over,
  };
}
