import { describe, expect, it } from "vitest";
import { parseCpuId, parseCpuTicks, stealPercent } from "../../bench/machine.js";

// A /proc/stat as Linux writes it: the aggregate line, then one per core.
const stat = (user: number, steal: number, guest = 0): string =>
  [
    `cpu  ${user} 10 20 ${1000 - user} 5 0 3 ${steal} ${guest} 0`,
    `cpu0 ${user} 10 20 ${1000 - user} 5 0 3 ${steal} ${guest} 0`,
    "intr 1 2 3",
  ].join("\n");

describe("the bench's CPU steal figure", () => {
  it("reads the aggregate line's steal and total ticks, not a core's", () => {
    expect(parseCpuTicks(stat(400, 50))).toEqual({ steal: 50, total: 400 + 10 + 20 + 600 + 5 + 0 + 3 + 50 });
  });

  it("does not count guest time twice (the kernel already counts it in user)", () => {
    expect(parseCpuTicks(stat(400, 50, 300))).toEqual(parseCpuTicks(stat(400, 50, 0)));
  });

  it("gives the share stolen between two samples", () => {
    const a = { steal: 100, total: 10_000 };
    const b = { steal: 300, total: 11_000 };
    expect(stealPercent(a, b)).toBe(20);
  });

  it("gives nothing without two samples or without time passing", () => {
    expect(stealPercent(undefined, { steal: 1, total: 2 })).toBeUndefined();
    expect(stealPercent({ steal: 1, total: 2 }, { steal: 1, total: 2 })).toBeUndefined();
    expect(parseCpuTicks("intr 1 2 3")).toBeUndefined();
  });
});

describe("the bench's record of the host CPU", () => {
  it("reads family, model, stepping and cache size of the first processor", () => {
    const cpuinfo = [
      "processor\t: 0",
      "cpu family\t: 6",
      "model\t\t: 167",
      "model name\t: Intel(R) Xeon(R) Processor",
      "stepping\t: 8",
      "cache size\t: 107520 KB",
      "",
      "processor\t: 1",
      "cpu family\t: 7",
    ].join("\n");
    expect(parseCpuId(cpuinfo)).toBe("family 6 model 167 stepping 8, cache 107520 KB");
  });

  it("gives nothing for a cpuinfo without them (another architecture)", () => {
    expect(parseCpuId("processor\t: 0\nBogoMIPS\t: 50.00\n")).toBeUndefined();
  });
});
