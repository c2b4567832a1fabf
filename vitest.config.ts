import { defineConfig } from "vitest/config";

// Two projects: `unit` runs pure code and fake peers in parallel; `qemu` starts
// real QEMU with the test guest. On these 2-core machines the QEMU files run
// two at a time (one per QEMU version is the common split); each file keeps
// its own VMs sequential.
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: "unit",
          include: ["test/unit/**/*.test.ts"],
          sequence: { groupOrder: 0 },
          testTimeout: 20_000,
        },
      },
      {
        test: {
          name: "qemu",
          include: ["test/integration/**/*.test.ts"],
          sequence: { groupOrder: 1 },
          testTimeout: 240_000,
          hookTimeout: 240_000,
          fileParallelism: true,
          maxWorkers: 2,
          globalSetup: ["test/support/global-setup.ts"],
        },
      },
    ],
  },
});
