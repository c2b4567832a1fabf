import { describe, expect, it } from "vitest";
import { settledAll } from "../../src/engine/settle.js";

describe("settledAll", () => {
  it("gives every result in order", async () => {
    await expect(settledAll([Promise.resolve(1), Promise.resolve("two")])).resolves.toEqual([1, "two"]);
  });

  it("rejects with the first error only once the others have settled", async () => {
    let finishSlow!: () => void;
    let slowDone = false;
    const slow = new Promise<void>((resolve) => (finishSlow = resolve)).then(() => {
      slowDone = true;
    });
    const fail = Promise.reject(new Error("first"));
    const later = Promise.reject(new Error("second"));
    const all = settledAll([slow, fail, later]);
    let settled = false;
    void all.catch(() => (settled = true));
    // Give the rejections every chance to propagate: still pending while `slow` runs.
    for (let i = 0; i < 10; i++) await Promise.resolve();
    expect(settled).toBe(false);
    finishSlow();
    await expect(all).rejects.toThrow("first");
    expect(slowDone).toBe(true);
  });
});
