import { describe, expect, it } from "vitest";
import { ConfigError } from "../../src/engine/errors.js";
import { imageSpec, readActionInputs } from "../../src/action/inputs.js";
import { emulatorConfig, runnerDirs } from "../../src/action/runner.js";

const opts = { env: {}, cwd: "/work/repo", homeDir: "/home/runner", hostArch: "x64" };
const reader = (values: Record<string, string>) => (name: string) => values[name] ?? "";

function problemsOf(values: Record<string, string>): readonly string[] {
  try {
    readActionInputs(reader(values), opts);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  throw new Error("expected a ConfigError");
}

describe("the Action's inputs", () => {
  it("are all optional but the image: empty inputs mean the defaults, and no host share", () => {
    const i = readActionInputs(reader({ image: "emulator-v1.4.0" }), opts);
    expect(i).toMatchObject({
      image: { kind: "tag", tag: "emulator-v1.4.0" },
      qemu: "auto",
      cache: "actions",
      saveOn: "default-branch",
      resumeTimeoutGiven: false,
    });
    expect(i.overrides).toEqual({ hostShare: { mode: "none" } });
    const local = readActionInputs(reader({ cache: "local" }), opts);
    expect(local.image).toEqual({ kind: "default" });
  });

  it("fail early on an empty image with cache: actions or none, naming the input and the fix", () => {
    for (const cache of ["", "actions", "none"]) {
      const text = problemsOf({ cache }).join("\n");
      expect(text).toContain('image="" (from action inputs): is required with cache:');
      expect(text).toContain("image: emulator-v1.4.0");
    }
  });

  it("share the host only when asked, read-only unless host-share-read-only is false", () => {
    const read = (values: Record<string, string>, env: Record<string, string> = {}) =>
      readActionInputs(reader({ image: "./i.qcow2", ...values }), { ...opts, env }).overrides.hostShare;
    expect(read({})).toEqual({ mode: "none" });
    expect(read({ "host-share": "cwd" })).toEqual({ mode: "cwd", readOnly: true });
    expect(read({ "host-share": "cwd", "host-share-read-only": "false" })).toEqual({
      mode: "cwd",
      readOnly: false,
    });
    expect(read({ "host-share": "/srv/x" })).toEqual({ mode: "path", path: "/srv/x", readOnly: true });
    // The engine's variable still applies when the input is empty (the summary lists it).
    expect(read({}, { HEXCLAVE_EMULATOR_HOST_SHARE: "cwd" })).toEqual({ readOnly: true });
    expect(problemsOf({ image: "./i.qcow2", "host-share-read-only": "yes" }).join("\n")).toContain(
      'host-share-read-only="yes" (from action inputs): must be true or false',
    );
  });

  it("check cache-key-suffix, default-branch and resume-timeout", () => {
    const i = readActionInputs(
      reader({
        image: "./i.qcow2",
        "cache-key-suffix": "v2",
        "default-branch": "trunk",
        "resume-timeout": "90",
      }),
      opts,
    );
    expect(i).toMatchObject({ cacheKeySuffix: "v2", defaultBranch: "trunk", resumeTimeoutGiven: true });
    expect(i.overrides).toMatchObject({ snapshotReadyTimeoutSec: "90" });
    const text = problemsOf({
      image: "./i.qcow2",
      "cache-key-suffix": "a-b",
      "resume-timeout": "soon",
    }).join("\n");
    expect(text).toContain('cache-key-suffix="a-b" (from action inputs): must be 1-64 letters');
    expect(text).toContain('resume-timeout="soon"');
    expect(problemsOf({ cache: "local", "cache-key-suffix": "x" }).join("\n")).toContain(
      "only salts the Actions cache key",
    );
  });

  it("reject every bad input in one error, each with its input name, value, rule and an example", () => {
    const problems = problemsOf({
      ram: "lots",
      cpus: "0",
      snapshot: "sometimes",
      cache: "s3",
      "cache-dir": "/var/cache/x",
      "save-on": "tuesdays",
      "dashboard-port": "99999",
      "bind-address": "localhost",
      rotation: "maybe",
      "host-share": "elsewhere",
      qemu: "qemu-system-x86_64",
      "image-sha256": "abc",
      "ready-timeout": "-1",
    });
    const text = problems.join("\n");
    for (const name of [
      "ram",
      "cpus",
      "snapshot",
      "cache",
      "cache-dir",
      "save-on",
      "dashboard-port",
      "bind-address",
      "rotation",
      "host-share",
      "qemu",
      "image-sha256",
      "ready-timeout",
    ]) {
      expect(text).toContain(`${name}=`);
    }
    expect(text).toContain('ram="lots" (ramMiB, from action inputs): must be a whole number of MiB');
    expect(text).toContain("(e.g. ram=4096)");
    expect(text).toContain('cache="s3" (from action inputs): must be one of actions, local, none');
    expect(text).toContain("is only used with cache: local");
  });

  it("reports a conflict between inputs even when they are each valid", () => {
    expect(problemsOf({ "dashboard-port": "27000", "backend-port": "27000" }).join("\n")).toMatch(
      /ports.*dashboard-port.*backend-port|backend-port.*dashboard-port/s,
    );
    expect(problemsOf({ image: "./x.qcow2", "image-sha256": "a".repeat(64) })[0]).toContain(
      "only used when image is a URL or a release tag",
    );
  });

  it("map onto engine settings, and the config uses the runner's directories", () => {
    const values = {
      ram: "512",
      cpus: "1",
      "port-prefix": "91",
      "backend-port": "27001",
      "bind-address": "0.0.0.0",
      rotation: "false",
      snapshot: "required",
      "ready-timeout": "99",
      "host-share": "./src",
      image: "images/stack-emulator-amd64.qcow2",
    };
    const inputs = readActionInputs(reader(values), opts);
    const dirs = runnerDirs({ RUNNER_TEMP: "/t", GITHUB_WORKSPACE: "/work/repo" }, "/home/runner", "/");
    const c = emulatorConfig(inputs, dirs, {}, {}, "x64");
    expect(c).toMatchObject({
      ramMiB: 512,
      cpus: 1,
      portPrefix: 91,
      bindAddress: "0.0.0.0",
      rotation: false,
      snapshot: "required",
      readyTimeoutSec: 99,
      hostShare: { mode: "path", path: "/work/repo/src", readOnly: true },
      image: "/work/repo/images/stack-emulator-amd64.qcow2",
      home: "/t/hexclave-emulator/home",
      runDir: "/t/hexclave-emulator/run",
      snapshotDir: "/t/hexclave-emulator/home/snapshots",
    });
    expect(c.ports.backend).toBe(27001);
  });

  it("keep snapshots in cache-dir with cache: local, and the run directory in RUNNER_TEMP", () => {
    const inputs = readActionInputs(reader({ cache: "local", "cache-dir": "/srv/hxe" }), opts);
    const dirs = runnerDirs({ RUNNER_TEMP: "/t" }, "/home/runner", "/work/repo");
    const c = emulatorConfig(inputs, dirs, {}, {}, "x64");
    expect(c.snapshotDir).toBe("/srv/hxe/snapshots");
    expect(c.image).toBe("/srv/hxe/images/stack-emulator-amd64.qcow2");
    expect(c.runDir).toBe("/t/hexclave-emulator/run");
    const byDefault = emulatorConfig(readActionInputs(reader({ cache: "local" }), opts), dirs, {}, {}, "x64");
    expect(byDefault.snapshotDir).toBe("/home/runner/.hexclave/emulator/snapshots");
  });

  it("tell a path, a URL and a release tag apart", () => {
    expect(imageSpec("")).toEqual({ kind: "default" });
    expect(imageSpec("stack-emulator-amd64.qcow2")).toEqual({
      kind: "path",
      path: "stack-emulator-amd64.qcow2",
    });
    expect(imageSpec("./img")).toEqual({ kind: "path", path: "./img" });
    expect(imageSpec("https://example.com/a.qcow2")).toEqual({
      kind: "url",
      url: "https://example.com/a.qcow2",
    });
    expect(imageSpec("emulator-v1.2.3")).toEqual({ kind: "tag", tag: "emulator-v1.2.3" });
  });
});
