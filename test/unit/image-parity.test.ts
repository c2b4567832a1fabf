/**
 * The Dockerfile (for users) and scripts/k8s/build-image.sh (for the test
 * cluster, without Docker) build the same image: the same Debian packages
 * (both through images/agent/packages.sh), the same files at the same paths
 * (images/agent/files.txt), the same Node and Debian versions, user and
 * config, under the chart's default image name.
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { REPO_ROOT } from "../support/tools.js";

const read = (p: string) => readFileSync(join(REPO_ROOT, p), "utf8");
const imageEnv = Object.fromEntries(
  read("images/agent/image.env")
    .split("\n")
    .filter((l) => /^[A-Z_]+=/.test(l))
    .map((l) => l.split("=", 2) as [string, string]),
);
const filesTxt = read("images/agent/files.txt")
  .split("\n")
  .map((l) => l.replace(/#.*/, "").trim())
  .filter(Boolean)
  .map((l) => l.split(/\s+/) as [string, string]);

/** The Dockerfile's instructions (continuations joined), and those of its last stage. */
function dockerfile() {
  const lines = read("Dockerfile")
    .replace(/\\\n/g, " ")
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith("#"));
  const lastFrom = lines.map((l) => l.startsWith("FROM ")).lastIndexOf(true);
  return { all: lines, final: lines.slice(lastFrom) };
}

function plan() {
  const out = execFileSync("bash", [join(REPO_ROOT, "scripts/k8s/build-image.sh"), "--plan"], {
    encoding: "utf8",
  });
  const lines = out.trim().split("\n");
  const value = (k: string) => lines.find((l) => l.startsWith(`${k} `))!.slice(k.length + 1);
  return {
    name: value("name"),
    suite: value("suite"),
    node: value("node"),
    packages: value("packages").split(" "),
    files: lines.filter((l) => l.startsWith("file ")).map((l) => l.split(" ").slice(1) as [string, string]),
    config: JSON.parse(value("config")) as {
      Env: string[];
      WorkingDir: string;
      User: string;
      Cmd: string[];
    },
  };
}

describe("the agent image: Dockerfile and build-image.sh", () => {
  const d = dockerfile();
  const p = plan();

  it("use the same Debian suite and Node version (images/agent/image.env)", () => {
    expect(d.all).toContain(`ARG NODE_VERSION=${imageEnv.NODE_VERSION}`);
    expect(d.all).toContain(`ARG DEBIAN_SUITE=${imageEnv.DEBIAN_SUITE}`);
    expect(d.final[0]).toBe("FROM debian:${DEBIAN_SUITE}-slim");
    expect(d.all).toContain("FROM node:${NODE_VERSION}-${DEBIAN_SUITE}-slim AS node");
    expect([p.suite, p.node]).toEqual([imageEnv.DEBIAN_SUITE, imageEnv.NODE_VERSION]);
  });

  it("install the same packages: both take them from packages.txt through packages.sh", () => {
    const install = d.final.filter((l) => l.includes("apt-get install"));
    expect(install).toHaveLength(1);
    // No package named in the Dockerfile itself: the list is the one file.
    expect(install[0]).toMatch(/--no-install-recommends\s+\$\(sh \/tmp\/agent-image\/packages\.sh /);
    expect(d.final).toContain("COPY images/agent/ /tmp/agent-image/");
    const arch = execFileSync("dpkg", ["--print-architecture"], { encoding: "utf8" }).trim();
    const listed = execFileSync("sh", [join(REPO_ROOT, "images/agent/packages.sh"), arch], {
      encoding: "utf8",
    })
      .trim()
      .split(" ");
    expect(p.packages).toEqual(listed);
    expect(listed).toEqual(expect.arrayContaining(["qemu-utils", "zstd"]));
    expect(listed.some((x) => x.startsWith("qemu-system-"))).toBe(true);
    // The same setup step (the user, the commands) after the packages.
    expect(install[0]).toContain("sh /tmp/agent-image/setup.sh");
    expect(read("scripts/k8s/build-image.sh")).toContain('chroot "$1" sh /tmp/setup.sh');
  });

  it("hold the same files at the same paths (images/agent/files.txt)", () => {
    const copies = d.final
      .filter((l) => l.startsWith("COPY ") && !l.includes("/tmp/agent-image/"))
      .map((l) => l.split(/\s+/).pop()!);
    expect(copies).toEqual(filesTxt.map(([, dest]) => dest));
    expect(p.files).toEqual(filesTxt);
    // Each Dockerfile COPY brings what files.txt says it is.
    const from = (dest: string) => d.final.find((l) => l.startsWith("COPY ") && l.endsWith(` ${dest}`))!;
    expect(from("/usr/local/bin/node")).toBe("COPY --from=node /usr/local/bin/node /usr/local/bin/node");
    expect(from("/app/lib")).toBe("COPY --from=build /src/lib /app/lib");
    expect(from("/app/bin")).toBe("COPY bin /app/bin");
    expect(from("/app/node_modules")).toBe("COPY --from=build /src/node_modules /app/node_modules");
    expect(d.all).toContain(
      "RUN npx tsc -p tsconfig.build.json && npm prune --omit=dev --ignore-scripts --no-audit --no-fund",
    );
  });

  it("run as the same non-root user, with the same environment, working directory and command", () => {
    expect(d.final).toContain(`USER ${imageEnv.IMAGE_UID}:${imageEnv.IMAGE_UID}`);
    expect(p.config.User).toBe(`${imageEnv.IMAGE_UID}:${imageEnv.IMAGE_UID}`);
    expect(d.final).toContain(`ENV ${p.config.Env.join(" ")}`);
    expect(d.final).toContain(`WORKDIR ${p.config.WorkingDir}`);
    expect(d.final).toContain(`CMD ${JSON.stringify(p.config.Cmd).replaceAll(",", ", ")}`);
  });

  it("are named like the chart's default image, and the build context holds what the Dockerfile copies", () => {
    const values = parse(read("charts/hexclave-emulator/values.yaml")) as { image: { repository: string } };
    const chart = parse(read("charts/hexclave-emulator/Chart.yaml")) as { appVersion: string };
    expect(p.name).toBe(`${values.image.repository}:${chart.appVersion}`);
    const allowed = read(".dockerignore")
      .split("\n")
      .filter((l) => l.startsWith("!"))
      .map((l) => l.slice(1).replace(/\/$/, ""));
    const sources = d.all
      .filter((l) => l.startsWith("COPY ") && !l.includes("--from="))
      .flatMap((l) => l.split(/\s+/).slice(1, -1))
      .map((s) => s.replace(/\/$/, ""));
    for (const s of sources) expect(allowed, s).toContain(s);
  });
});
