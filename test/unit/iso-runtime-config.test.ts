import { describe, expect, it } from "vitest";
import { EngineError } from "../../src/engine/errors.js";
import { runtimeConfigIsoSpec } from "../../src/engine/iso/index.js";

describe("runtimeConfigIsoSpec", () => {
  it("renders runtime.env as KEY=VALUE lines in order and base.env verbatim, labelled STACKCFG", () => {
    const spec = runtimeConfigIsoSpec({ B_KEY: "2", A_KEY: "x=y z", _EMPTY: "" }, "raw\r\ncontent");
    expect(spec.volumeId).toBe("STACKCFG");
    expect(spec.files).toEqual([
      { path: "runtime.env", data: "B_KEY=2\nA_KEY=x=y z\n_EMPTY=\n" },
      { path: "base.env", data: "raw\r\ncontent" },
    ]);
    expect(spec.date).toBeUndefined();
  });

  it("writes an empty runtime.env for no variables and passes a date through", () => {
    const date = new Date(0);
    const spec = runtimeConfigIsoSpec({}, "", date);
    expect(spec.files[0]).toEqual({ path: "runtime.env", data: "" });
    expect(spec.date).toBe(date);
  });

  it("rejects keys that are not shell variable names, listing each with a hint", () => {
    try {
      runtimeConfigIsoSpec({ lower: "1", "1ABC": "2", "A-B": "3", OK: "4" }, "");
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(EngineError);
      const e = err as EngineError;
      expect(e.code).toBe("RUNTIME_ENV_INVALID");
      for (const key of ["lower", "1ABC", "A-B"]) expect(e.message).toContain(`"${key}"`);
      expect(e.message).not.toContain('"OK"');
      expect(e.hint).toMatch(/UPPER_SNAKE_CASE/);
    }
  });

  it("rejects values with line breaks", () => {
    for (const value of ["a\nb", "a\rb", "trailing\n"]) {
      expect(() => runtimeConfigIsoSpec({ KEY: value }, "")).toThrow(/value of KEY contains a line break/);
    }
  });
});
