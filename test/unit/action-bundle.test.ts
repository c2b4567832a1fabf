/**
 * The bundled Action (dist/) as the runner loads it: action.yml's contract,
 * an ES module bundle that runs under Node with INPUT_* and the file-command
 * files, one error for every bad input, a post step with nothing to do.
 * (The steps against real QEMU are in test/integration/action.qemu10.test.ts.)
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { INPUT_NAMES } from "../../src/action/inputs.js";
import { OUTPUT_NAMES } from "../../src/action/report.js";
import { annotations, newJob, node24, readActionYml, runStep } from "../support/action-runner.js";
import { REPO_ROOT } from "../support/tools.js";

const main = join(REPO_ROOT, "dist/main/index.js");
const made: string[] = [];
const tempRoot = () => {
  const d = mkdtempSync(join(tmpdir(), "hxe-bundle-"));
  made.push(d);
  return d;
};
afterAll(() => made.forEach((d) => rmSync(d, { recursive: true, force: true })));

describe("action.yml", () => {
  const meta = readActionYml();

  it("runs main and post on node24, post always", () => {
    expect(meta.runs).toMatchObject({
      using: "node24",
      main: "dist/main/index.js",
      post: "dist/post/index.js",
      "post-if": "always()",
    });
  });

  it("declares every input the code reads, and every output it sets", () => {
    expect(Object.keys(meta.inputs).sort()).toEqual([...INPUT_NAMES].sort());
    expect([...meta.outputs].sort()).toEqual([...OUTPUT_NAMES].sort());
    expect(meta.inputs["job-status"]?.default).toBe("${{ job.status }}");
  });

  it("documents every input and output with a description", () => {
    const text = readFileSync(join(REPO_ROOT, "action.yml"), "utf8");
    for (const name of [...Object.keys(meta.inputs), ...meta.outputs]) {
      expect(text, name).toMatch(new RegExp(`\\n  ${name}:\\n    description: \\S`));
    }
  });
});

describe("the bundled Action (dist/)", () => {
  beforeAll(() => {
    if (!existsSync(main)) execFileSync("npm", ["run", "build"], { cwd: REPO_ROOT, stdio: "inherit" });
  }, 180_000);

  it("is an ES module bundle per entry point", () => {
    for (const entry of ["main", "post"]) {
      expect(readFileSync(join(REPO_ROOT, `dist/${entry}/index.js`), "utf8")).toMatch(/^import /m);
      expect(JSON.parse(readFileSync(join(REPO_ROOT, `dist/${entry}/package.json`), "utf8"))).toEqual({
        type: "module",
      });
    }
  });
});

const nodes: Array<[string, () => string]> = [
  ["Node 20", () => process.execPath],
  ["Node 24", node24],
];

describe.each(nodes)("the bundled Action on %s", (_label, nodeBinary) => {
  let node = "";
  beforeAll(() => {
    node = nodeBinary();
    expect(execFileSync(node, ["--version"], { encoding: "utf8" })).toMatch(
      _label === "Node 24" ? /^v24\./ : /^v2\d\./,
    );
  }, 300_000);

  it("fails the step with one error that names every bad input and its fix", async () => {
    const job = newJob(tempRoot());
    const r = await runStep(job, "main", {
      node,
      inputs: { ram: "lots", snapshot: "sometimes", cache: "s3", "backend-port": "0", "save-on": "friday" },
    });
    expect(r.code).toBe(1);
    const errors = annotations(r.stdout, "error");
    expect(errors).toHaveLength(1);
    const [error] = errors;
    expect(error).toContain('ram="lots" (ramMiB, from action inputs): must be a whole number');
    expect(error).toContain('snapshot="sometimes"');
    expect(error).toContain('cache="s3"');
    expect(error).toContain('backend-port="0"');
    expect(error).toContain('save-on="friday"');
    expect(error).toContain("hint: fix the `with:` block");
    expect(r.outputs).toEqual({});
    expect(r.state).toEqual({});
    expect(r.summary).toContain("failed to start");
  });

  it("fails at once, before the host steps, when image is empty with cache: actions", async () => {
    const job = newJob(tempRoot());
    const r = await runStep(job, "main", { node, inputs: {} });
    expect(r.code).toBe(1);
    const [error] = annotations(r.stdout, "error");
    expect(error).toContain('image="" (from action inputs): is required with cache: actions');
    expect(error).toContain("image: emulator-v1.4.0");
    expect(r.stdout).not.toContain("::group::kvm");
  });

  it("fails clearly when the image does not exist, after the host steps", async () => {
    const job = newJob(tempRoot());
    const r = await runStep(job, "main", { node, inputs: { image: "./missing.qcow2", cache: "none" } });
    expect(r.code).toBe(1);
    expect(annotations(r.stdout, "error")[0]).toContain(
      `image ${job.workspace}/missing.qcow2 does not exist`,
    );
    expect(r.stdout).toContain("::group::kvm");
  });

  it("lists the engine's environment variables the workflow set, and lets inputs win", async () => {
    const job = newJob(tempRoot(), { env: { PORT_PREFIX: "91", EMULATOR_RAM: "2048" } });
    const r = await runStep(job, "main", {
      node,
      inputs: { image: "./missing.qcow2", cache: "none", "port-prefix": "71" },
    });
    expect(r.stdout).toContain("environment: EMULATOR_RAM=2048 (ramMiB)");
    expect(r.stdout).toContain("environment: PORT_PREFIX ignored (an input sets portPrefix)");
  });

  it("has a post step that does nothing when the main step started nothing", async () => {
    const job = newJob(tempRoot());
    const r = await runStep(job, "post", { node });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("nothing to stop");
  });
});
