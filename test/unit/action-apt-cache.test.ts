/**
 * The QEMU packages through the Actions cache: resolveQemu on an injected
 * host (apt-get and dpkg are recorded, not run; an "install" drops the .debs
 * apt would download and a qemu-system binary on PATH), with the real
 * @actions/cache against the local cache service for the restores and the
 * post step's save. A miss updates and installs into the Action's cache
 * directory and the post step saves; a hit installs the restored .debs with
 * dpkg and neither updates nor saves; a dpkg failure falls back to apt-get;
 * current package lists skip the update; an outage is plain apt-get.
 */
import { randomBytes } from "node:crypto";
import { chmodSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { APT_DIR, aptCacheKey, candidatesIn, saveAptDebs } from "../../src/action/apt-cache.js";
import { actionsCache } from "../../src/action/cache-client.js";
import { resolveQemu, type QemuDeps } from "../../src/action/qemu.js";
import { useCacheService } from "../support/cache-service.js";
import type { ActionsCacheServer } from "../support/actions-cache-server.js";

const ENV = [
  "ACTIONS_CACHE_SERVICE_V2",
  "ACTIONS_RESULTS_URL",
  "ACTIONS_RUNTIME_TOKEN",
  "RUNNER_TEMP",
  "GITHUB_WORKSPACE",
];
const PACKAGES = ["qemu-system-x86", "qemu-utils"];
/** What apt downloads for them on a runner image that has none of QEMU's dependencies. */
const DOWNLOADS = [
  "qemu-system-x86_1%3a8.2.2+ds-0ubuntu1.4_amd64.deb",
  "qemu-utils_1%3a8.2.2+ds-0ubuntu1.4_amd64.deb",
  "libfdt1_1.7.0-2build1_amd64.deb",
];
const POLICY_CURRENT = PACKAGES.map(
  (p) =>
    `${p}:\n  Installed: (none)\n  Candidate: 1:8.2.2+ds-0ubuntu1.4\n  Version table:\n     1:8.2.2+ds-0ubuntu1.4 500\n`,
).join("");

function logger() {
  const lines = { info: [] as string[], warn: [] as string[] };
  return { lines, log: { info: (m: string) => lines.info.push(m), warn: (m: string) => lines.warn.push(m) } };
}

describe("the QEMU packages in the Actions cache", () => {
  let root: string;
  let server: ActionsCacheServer;

  /**
   * A runner laid out under `name` (its own RUNNER_TEMP and GITHUB_WORKSPACE)
   * on runner image `imageVersion`, with no QEMU on PATH.
   */
  function runner(name: string, imageVersion: string, over: Partial<QemuDeps> = {}) {
    const temp = join(root, name, "_temp");
    const workspace = join(root, name, "repo", "repo");
    const bin = join(root, name, "bin");
    for (const d of [temp, workspace, bin]) mkdirSync(d, { recursive: true });
    process.env.RUNNER_TEMP = temp;
    process.env.GITHUB_WORKSPACE = workspace;
    const dir = join(temp, "hexclave-emulator", "cache");
    const ran: string[] = [];
    const asUser: string[] = [];
    const warnings: string[] = [];
    const installQemu = () => {
      writeFileSync(join(bin, "qemu-system-x86_64"), "#!/bin/sh\n");
      chmodSync(join(bin, "qemu-system-x86_64"), 0o755);
    };
    const deps: QemuDeps = {
      platform: "linux",
      env: { PATH: bin, ImageOS: "ubuntu24", ImageVersion: imageVersion },
      osRelease: () => 'ID=ubuntu\nID_LIKE=debian\nVERSION_ID="24.04"\n',
      exists: () => false,
      isRoot: false,
      canBeRoot: async () => true,
      asRoot: async (argv) => {
        ran.push(argv.join(" ").replaceAll(dir, "<dir>"));
        if (argv[0] === "apt-get" && argv[1] === "install") {
          const archives = argv.find((a) => a.startsWith("Dir::Cache::archives="))?.split("=")[1];
          if (archives) for (const f of DOWNLOADS) writeFileSync(join(archives, f), randomBytes(4096));
          installQemu();
        }
        if (argv[0] === "dpkg") installQemu();
      },
      run: async (argv) => {
        asUser.push(argv.join(" "));
        return argv[0] === "dpkg" ? "amd64" : "";
      },
      log: () => undefined,
      warn: (m) => warnings.push(m),
      cache: actionsCache,
      cacheDir: dir,
      ...over,
    };
    return { deps, dir, ran, asUser, warnings };
  }

  /** A job on image `imageVersion` that downloaded the packages, and the post step that saved them. */
  async function seeded(imageVersion: string): Promise<{ key: string; debs: Map<string, Buffer> }> {
    const a = runner(`seed-${imageVersion}`, imageVersion);
    const c = await resolveQemu("auto", "amd64", a.deps);
    const s = await saveAptDebs({ ...c.aptSave!, client: actionsCache, log: logger().log });
    expect(s.kind).toBe("saved");
    const archives = join(a.dir, APT_DIR);
    return {
      key: c.aptSave!.key,
      debs: new Map(readdirSync(archives).map((f) => [f, readFileSync(join(archives, f))])),
    };
  }

  useCacheService("hxe-apt-cache-", ENV, (s, r) => {
    server = s;
    root = r;
  });

  it("on a miss, updates and installs into the Action's cache directory; the post step then saves the .debs", async () => {
    const a = runner("miss", "20250105.1.0");
    const c = await resolveQemu("auto", "amd64", a.deps);
    expect(c.source).toBe("installed");
    expect(c.apt).toMatchObject({ cache: "miss", debs: DOWNLOADS.length });
    expect(c.aptSave?.key).toMatch(/^hexclave-emulator-apt-ubuntu24-20250105\.1\.0-amd64-[0-9a-f]{12}$/);
    expect(c.aptSave?.dir).toBe(a.dir);
    expect(a.ran).toEqual([
      "apt-get update -q",
      "apt-get install -y -q --no-install-recommends -o Dir::Cache::archives=<dir>/apt -o APT::Keep-Downloaded-Packages=true qemu-system-x86 qemu-utils",
    ]);
    expect(a.warnings).toEqual([]);
    // The main step uploads nothing: the save is the post step's.
    expect(server.entries.some((e) => e.key === c.aptSave?.key)).toBe(false);

    const { log, lines } = logger();
    const s = await saveAptDebs({ ...c.aptSave!, client: actionsCache, log });
    expect(s).toMatchObject({ kind: "saved", key: c.aptSave?.key, debs: DOWNLOADS.length });
    expect(lines.warn).toEqual([]);
    expect(server.entries.filter((e) => e.key === c.aptSave?.key && e.finalized)).toHaveLength(1);
  });

  it("on a hit, installs the restored .debs with dpkg -i, without apt-get update, and saves nothing", async () => {
    const { key, debs } = await seeded("20250112.2.0");
    const b = runner("hit/elsewhere", "20250112.2.0");
    const c = await resolveQemu("auto", "amd64", b.deps);
    expect(c.source).toBe("installed");
    expect(c.apt).toMatchObject({ cache: "hit", key, debs: DOWNLOADS.length });
    expect(c.aptSave).toBeUndefined();
    const files = [...DOWNLOADS].sort().map((f) => `<dir>/apt/${f}`);
    expect(b.ran).toEqual([`dpkg -i --refuse-downgrade ${files.join(" ")}`]);
    expect(b.asUser.some((a) => a.startsWith("apt-cache"))).toBe(false);
    for (const [name, bytes] of debs)
      expect(readFileSync(join(b.dir, APT_DIR, name)).equals(bytes)).toBe(true);
    expect(c.message).toContain("from the Actions cache");
    expect(b.warnings).toEqual([]);
  });

  it("keys another runner image apart: a new ImageVersion misses", async () => {
    await seeded("20250119.3.0");
    const b = runner("next-image", "20250126.1.0");
    const c = await resolveQemu("auto", "amd64", b.deps);
    expect(c.apt?.cache).toBe("miss");
    expect(b.ran[0]).toBe("apt-get update -q");
  });

  it("when dpkg fails on the cached .debs, warns and installs with apt-get --fix-broken, saving nothing", async () => {
    const { key } = await seeded("20250202.1.0");
    const b = runner("dpkg-fails", "20250202.1.0");
    const record = b.deps.asRoot;
    b.deps.asRoot = async (argv, timeoutMs) => {
      await record(argv, timeoutMs);
      if (argv[0] === "dpkg")
        throw new Error("dpkg: dependency problems prevent configuration of qemu-system-x86");
    };
    const c = await resolveQemu("auto", "amd64", b.deps);
    expect(c.source).toBe("installed");
    expect(c.apt?.cache).toBe("fallback");
    expect(c.aptSave).toBeUndefined();
    expect(b.ran.map((r) => r.split(" ").slice(0, 2).join(" "))).toEqual([
      "dpkg -i",
      "apt-get update",
      "apt-get install",
    ]);
    expect(b.ran[2]).toContain("--fix-broken");
    expect(b.warnings.join("\n")).toContain(
      `the cached QEMU packages ${key} did not install (dpkg -i failed`,
    );
    expect(b.warnings.join("\n")).toContain(`gh cache delete ${key}`);
  });

  it("skips apt-get update when the package lists already offer every package", async () => {
    const a = runner("lists-current", "20250209.1.0", {
      run: async (argv) => (argv[0] === "dpkg" ? "amd64" : argv[0] === "apt-cache" ? POLICY_CURRENT : ""),
    });
    const c = await resolveQemu("auto", "amd64", a.deps);
    expect(a.ran).toEqual([expect.stringMatching(/^apt-get install /)]);
    expect(c.apt?.ms.update).toBeUndefined();
    expect(c.apt?.note).toContain("no apt-get update");
    expect(c.aptSave).toBeDefined();
  });

  it("updates and installs again when an install with the runner's package lists fails", async () => {
    let installs = 0;
    const a = runner("lists-stale", "20250216.1.0", {
      run: async (argv) => (argv[0] === "dpkg" ? "amd64" : argv[0] === "apt-cache" ? POLICY_CURRENT : ""),
    });
    const record = a.deps.asRoot;
    a.deps.asRoot = async (argv, timeoutMs) => {
      if (argv[1] === "install" && installs++ === 0) {
        a.ran.push("apt-get install (404)");
        throw new Error("E: Failed to fetch http://azure.archive.ubuntu.com/… 404  Not Found");
      }
      await record(argv, timeoutMs);
    };
    const c = await resolveQemu("auto", "amd64", a.deps);
    expect(a.ran.map((r) => r.split(" ").slice(0, 2).join(" "))).toEqual([
      "apt-get install",
      "apt-get update",
      "apt-get install",
    ]);
    expect(c.apt).toMatchObject({ cache: "miss" });
  });

  it("on a cache outage, warns and installs with plain apt-get", async () => {
    const a = runner("outage", "20250223.1.0");
    server.fail = { twirp: 429 };
    try {
      const c = await resolveQemu("auto", "amd64", a.deps);
      expect(c.source).toBe("installed");
      expect(c.apt?.cache).toBe("unavailable");
      expect(c.aptSave).toBeUndefined();
      expect(a.ran).toEqual([
        "apt-get update -q",
        "apt-get install -y -q --no-install-recommends qemu-system-x86 qemu-utils",
      ]);
      expect(a.warnings.join("\n")).toMatch(/the Actions cache service failed.*an outage, not a miss/);
    } finally {
      server.fail = {};
    }
  });

  it("warns when the post step's save meets an outage", async () => {
    const a = runner("save-outage", "20250302.1.0");
    const c = await resolveQemu("auto", "amd64", a.deps);
    server.fail = { twirp: 429 };
    try {
      const { log, lines } = logger();
      const s = await saveAptDebs({ ...c.aptSave!, client: actionsCache, log });
      expect(s).toMatchObject({ kind: "not-saved", outage: true });
      expect(lines.warn.join("\n")).toContain("the QEMU packages were not saved to the Actions cache");
    } finally {
      server.fail = {};
    }
  });

  it("treats a lost save race as benign", async () => {
    const { key } = await seeded("20250309.1.0");
    const a = runner("race", "20250309.1.0");
    mkdirSync(join(a.dir, APT_DIR), { recursive: true });
    writeFileSync(join(a.dir, APT_DIR, DOWNLOADS[0]!), randomBytes(64));
    const { log, lines } = logger();
    const s = await saveAptDebs({ key, dir: a.dir, client: actionsCache, log });
    expect(s.kind).toBe("lost-race");
    expect(lines.warn).toEqual([]);
  });
});

describe("the QEMU packages' cache key", () => {
  const ubuntu = 'ID=ubuntu\nVERSION_ID="24.04"\n';

  it("names the runner image and dpkg arch, and does not depend on the packages' order", () => {
    const env = { ImageOS: "ubuntu24", ImageVersion: "20250105.1.0" };
    const a = aptCacheKey(["qemu-utils", "qemu-system-x86"], { env, osRelease: ubuntu, dpkgArch: "amd64" });
    const b = aptCacheKey(["qemu-system-x86", "qemu-utils"], { env, osRelease: ubuntu, dpkgArch: "amd64" });
    expect(a.key).toBe(b.key);
    expect(a.key).toMatch(/^hexclave-emulator-apt-ubuntu24-20250105\.1\.0-amd64-[0-9a-f]{12}$/);
    expect(
      aptCacheKey(["qemu-system-arm", "qemu-utils"], { env, osRelease: ubuntu, dpkgArch: "arm64" }).key,
    ).toMatch(/-arm64-/);
    // A container job that inherited the host's ImageOS has another distribution: another key.
    const debian = aptCacheKey(["qemu-system-x86", "qemu-utils"], {
      env,
      osRelease: "ID=debian\nVERSION_ID=12\n",
      dpkgArch: "amd64",
    });
    expect(debian.key).not.toBe(a.key);
  });

  it("falls back to /etc/os-release without ImageOS/ImageVersion, and says what that misses", () => {
    const k = aptCacheKey(["qemu-system-x86"], { env: {}, osRelease: ubuntu, dpkgArch: "amd64" });
    expect(k.key).toMatch(/^hexclave-emulator-apt-ubuntu-24\.04-amd64-[0-9a-f]{12}$/);
    expect(k.basis).toContain("no ImageOS/ImageVersion");
  });

  it("reads apt-cache policy: a package whose Candidate is (none) is not offered", () => {
    const policy = `${POLICY_CURRENT}qemu-efi-aarch64:\n  Installed: (none)\n  Candidate: (none)\n  Version table:\n`;
    expect([...candidatesIn(policy, [...PACKAGES, "qemu-efi-aarch64"])].sort()).toEqual(PACKAGES);
    expect(candidatesIn("", PACKAGES).size).toBe(0);
  });
});
