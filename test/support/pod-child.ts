/**
 * A child process that takes a lock (or does any engine step) and then waits
 * to be killed, optionally in its own pid and UTS namespaces, as a Pod's
 * agent is: pid 1 there, with the host name the test chooses (the fixed Pod
 * name). Killing it kills the namespace, as a container's death does.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { REPO_ROOT } from "./tools.js";

/** Can this machine make pid and UTS namespaces (root, util-linux unshare)? */
export const canUnshare: boolean =
  spawnSync("unshare", ["--pid", "--fork", "--uts", "--mount-proc", "true"], { stdio: "ignore" }).status ===
  0;

export interface PodChild {
  /** The pid the child sees as its own (1 in a namespace). */
  pid: number;
  /** The child's first line after "ready", if it printed one (JSON). */
  said: unknown;
  /** SIGKILL it (the whole namespace) and resolve once it is gone. */
  kill(): Promise<void>;
}

/** An engine module's URL, for `import` in a child's code. */
export const engineModule = (rel: string): string =>
  JSON.stringify(pathToFileURL(join(REPO_ROOT, "src/engine", rel)).href);

/**
 * Runs `body` (an ES module body; `argv` holds `args`) in a child node. The
 * body ends by printing `ready <json>` on stdout; the child then waits.
 */
export async function podChild(
  body: string,
  args: string[],
  opts: { pod?: { hostname: string } } = {},
): Promise<PodChild> {
  const script = join(mkdtempSync(join(tmpdir(), "hxe-pod-")), "child.mjs");
  writeFileSync(script, `const argv = process.argv.slice(2);\n${body}\nsetInterval(() => {}, 60_000);\n`);
  const node = [process.execPath, "--import", "tsx", script, ...args];
  const unshare = ["--pid", "--fork", "--kill-child", "--uts", "--mount-proc"];
  const real: ChildProcess = opts.pod
    ? spawn("unshare", [...unshare, "sh", "-c", 'hostname "$0" && exec "$@"', opts.pod.hostname, ...node], {
        cwd: REPO_ROOT,
        stdio: ["ignore", "pipe", "inherit"],
      })
    : spawn(node[0]!, node.slice(1), { cwd: REPO_ROOT, stdio: ["ignore", "pipe", "inherit"] });
  const exited = new Promise<void>((resolve) => real.once("exit", () => resolve()));
  const line = await new Promise<string>((resolve, reject) => {
    let buf = "";
    real.stdout!.on("data", (d: Buffer) => {
      buf += d.toString();
      const m = /^ready(.*)$/m.exec(buf);
      if (m) resolve(m[1]!.trim());
    });
    real.once("exit", (code) => reject(new Error(`the child exited early (${code})`)));
  });
  const said: unknown = line === "" ? undefined : JSON.parse(line);
  const pid = (said as { pid?: number } | undefined)?.pid ?? real.pid!;
  return {
    pid,
    said,
    async kill() {
      // In a namespace: kill its pid 1 (the node, unshare's child); unshare exits once it is reaped.
      const target = opts.pod ? childPidOf(real.pid!) : real.pid!;
      process.kill(target, "SIGKILL");
      await exited;
    },
  };
}

function childPidOf(pid: number): number {
  const children = readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/);
  return Number(children[0]);
}
