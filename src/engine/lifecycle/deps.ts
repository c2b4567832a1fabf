/**
 * The effects a start has on the world, passed in rather than imported, so a
 * caller (a fault test, the benchmark) can wrap or observe one without
 * replacing engine modules. Real defaults; `withDeps` fills what is not given.
 */
import { syncGuestClock } from "../guest/clock.js";
import { rotateSecrets } from "../guest/rotation.js";
import { assertPortsFree, launchVm } from "./launch.js";
import { setTimeout as delay } from "node:timers/promises";

export interface EngineDeps {
  /** Starts QEMU for a plan and connects its monitor. */
  launch: typeof launchVm;
  /** Fails fast when a forwarded host port is taken (just before each launch). */
  checkPorts: typeof assertPortsFree;
  /** Generates or applies the secrets and rotates the guest to them. */
  rotate: typeof rotateSecrets;
  /** Sets a resumed guest's clock (optional for the guest: see guest/clock.ts). */
  syncClock: typeof syncGuestClock;
  /** Monotonic milliseconds: retry deadlines. */
  now: () => number;
  /** Waits between retries. */
  pause: (ms: number) => Promise<void>;
}

export const realDeps: EngineDeps = {
  launch: launchVm,
  checkPorts: assertPortsFree,
  rotate: rotateSecrets,
  syncClock: syncGuestClock,
  now: () => performance.now(),
  pause: (ms) => delay(ms),
};

export function withDeps(given: Partial<EngineDeps> = {}): EngineDeps {
  return { ...realDeps, ...given };
}
