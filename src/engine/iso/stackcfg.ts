import { EngineError } from "../errors.js";
import type { IsoSpec } from "./types.js";

export const STACKCFG_VOLUME_ID = "STACKCFG";
const ENV_KEY = /^[A-Z_][A-Z0-9_]*$/;

/**
 * The guest's runtime configuration disk: `runtime.env` (KEY=VALUE lines, in
 * the object's order) and `base.env` as given. The guest copies runtime.env
 * and sources it, so a key must be a shell variable name and a value one line.
 */
export function runtimeConfigIsoSpec(
  runtimeEnv: Record<string, string>,
  baseEnv: string,
  date?: Date,
): IsoSpec {
  const problems: string[] = [];
  const lines: string[] = [];
  for (const [key, value] of Object.entries(runtimeEnv)) {
    if (!ENV_KEY.test(key)) problems.push(`key ${JSON.stringify(key)} is not of the form ${ENV_KEY.source}`);
    if (/[\r\n\0]/.test(value)) problems.push(`value of ${key} contains a line break or NUL`);
    lines.push(`${key}=${value}\n`);
  }
  if (problems.length > 0) {
    throw new EngineError(
      "RUNTIME_ENV_INVALID",
      `invalid runtime.env for the STACKCFG disk: ${problems.join("; ")}`,
      {
        hint: "use UPPER_SNAKE_CASE names and single-line values",
      },
    );
  }
  return {
    volumeId: STACKCFG_VOLUME_ID,
    files: [
      { path: "runtime.env", data: lines.join("") },
      { path: "base.env", data: baseEnv },
    ],
    ...(date === undefined ? {} : { date }),
  };
}
