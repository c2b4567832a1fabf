/**
 * The enable-kvm input through the KvmDeps seam: a fake /dev/kvm (owner
 * root:kvm 0660, an ACL, the other bits) and a command runner that records
 * each argv it was given and applies setfacl/chmod to the fake node.
 */
import { describe, expect, it } from "vitest";
import { ensureKvm, hostKvmDeps, type KvmDeps, type KvmMode } from "../../src/action/kvm.js";
import { EngineError } from "../../src/engine/errors.js";

const UID = 1001;
const SETFACL = "/usr/bin/setfacl";

interface FakeHost {
  platform?: NodeJS.Platform;
  /** No /dev/kvm at all. */
  missing?: boolean;
  /** The user can already open it (e.g. in the kvm group). */
  alreadyUsable?: boolean;
  /** sudo asks for a password. */
  noRoot?: boolean;
  /** setfacl is not installed. */
  noSetfacl?: boolean;
  /** The filesystem refuses ACLs (setfacl exits non-zero). */
  aclRefused?: boolean;
  /** Commands succeed but change nothing (an LSM, a read-only /dev). */
  inert?: boolean;
}

function fakeHost(h: FakeHost = {}) {
  const ran: string[][] = [];
  const node = { aclUsers: new Set<number>(), othersRw: false };
  const deps: KvmDeps = {
    platform: h.platform ?? "linux",
    device: "/dev/kvm",
    uid: UID,
    exists: (p) => p === "/dev/kvm" && !h.missing,
    writable: (p) =>
      p === "/dev/kvm" && !h.missing && (!!h.alreadyUsable || node.aclUsers.has(UID) || node.othersRw),
    isRoot: false,
    canBeRoot: async () => !h.noRoot,
    which: (c) => (c === "setfacl" && !h.noSetfacl ? SETFACL : undefined),
    asRoot: async (argv) => {
      ran.push(argv);
      if (argv[0] === SETFACL) {
        if (h.aclRefused) throw new Error("setfacl: /dev/kvm: Operation not supported");
        const m = /^u:(\d+):rw$/.exec(argv[2] ?? "");
        if (argv[1] === "-m" && m && argv[3] === "/dev/kvm" && !h.inert) node.aclUsers.add(Number(m[1]));
      } else if (argv[0] === "chmod") {
        if (argv[1] === "o+rw" && argv[2] === "/dev/kvm" && !h.inert) node.othersRw = true;
      } else {
        throw new Error(`${argv[0]}: not expected on this host`);
      }
    },
  };
  return { deps, ran, node };
}

const MODES: KvmMode[] = ["auto", "true", "false"];

async function failure(p: Promise<unknown>): Promise<EngineError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(EngineError);
  return e as EngineError;
}

describe("enable-kvm", () => {
  it.each(MODES)("%s: leaves a /dev/kvm the user can already open alone", async (mode) => {
    const { deps, ran } = fakeHost({ alreadyUsable: true });
    expect(await ensureKvm(mode, deps)).toEqual({
      state: "usable",
      message: "/dev/kvm is readable and writable by uid 1001",
    });
    expect(ran).toEqual([]);
  });

  it.each(MODES)("%s: does nothing off Linux", async (mode) => {
    const { deps, ran } = fakeHost({ platform: "darwin" });
    expect((await ensureKvm(mode, deps)).state).toBe("not-linux");
    expect(ran).toEqual([]);
  });

  it.each(["auto", "false"] as const)(
    "%s: reports a missing /dev/kvm and goes on under TCG",
    async (mode) => {
      const { deps, ran } = fakeHost({ missing: true });
      const r = await ensureKvm(mode, deps);
      expect(r.state).toBe("missing");
      expect(r.message).toContain("/dev/kvm does not exist");
      expect(r.message).toContain("TCG");
      expect(ran).toEqual([]);
    },
  );

  it("true: fails the step when /dev/kvm is missing", async () => {
    const { deps, ran } = fakeHost({ missing: true });
    const e = await failure(ensureKvm("true", deps));
    expect(e.code).toBe("KVM_UNAVAILABLE");
    expect(e.message).toBe("enable-kvm is true, but /dev/kvm does not exist: this runner offers no KVM");
    expect(e.hint).toContain("enable-kvm: auto");
    expect(ran).toEqual([]);
  });

  it("false: never touches a /dev/kvm the user cannot open, even with root at hand", async () => {
    const { deps, ran, node } = fakeHost();
    const r = await ensureKvm("false", deps);
    expect(r.state).toBe("not-writable");
    expect(r.message).toContain("enable-kvm is false, so it was left as it is");
    expect(r.message).toContain("TCG");
    expect(ran).toEqual([]);
    expect(node).toEqual({ aclUsers: new Set(), othersRw: false });
  });

  it.each(["auto", "true"] as const)(
    "%s: grants this uid rw with an ACL on the device node, and nothing else",
    async (mode) => {
      const { deps, ran, node } = fakeHost();
      expect(await ensureKvm(mode, deps)).toEqual({
        state: "enabled",
        message: "granted uid 1001 rw on /dev/kvm with an ACL (until reboot)",
      });
      expect(ran).toEqual([[SETFACL, "-m", "u:1001:rw", "/dev/kvm"]]);
      expect(node.othersRw).toBe(false);
    },
  );

  it.each(["auto", "true"] as const)(
    "%s: falls back to chmod o+rw where setfacl is not installed, and says it widened access",
    async (mode) => {
      const { deps, ran } = fakeHost({ noSetfacl: true });
      const r = await ensureKvm(mode, deps);
      expect(r.state).toBe("enabled");
      expect(r.message).toBe(
        "made /dev/kvm readable and writable by every user with chmod o+rw (until reboot), " +
          "since setfacl is not installed (package acl)",
      );
      expect(ran).toEqual([["chmod", "o+rw", "/dev/kvm"]]);
    },
  );

  it("auto: falls back to chmod o+rw when the filesystem refuses the ACL, and says why", async () => {
    const { deps, ran } = fakeHost({ aclRefused: true });
    const r = await ensureKvm("auto", deps);
    expect(r.state).toBe("enabled");
    expect(r.message).toContain(
      "setfacl -m u:1001:rw /dev/kvm failed: setfacl: /dev/kvm: Operation not supported",
    );
    expect(ran).toEqual([
      [SETFACL, "-m", "u:1001:rw", "/dev/kvm"],
      ["chmod", "o+rw", "/dev/kvm"],
    ]);
  });

  it("auto: without root, reports what to do and goes on under TCG, running nothing", async () => {
    const { deps, ran } = fakeHost({ noRoot: true });
    const r = await ensureKvm("auto", deps);
    expect(r.state).toBe("not-writable");
    expect(r.message).toContain("sudo asks for a password");
    expect(r.message).toContain("kvm group");
    expect(r.message).toContain("TCG");
    expect(ran).toEqual([]);
  });

  it("true: without root, fails the step and names the fixes", async () => {
    const { deps, ran } = fakeHost({ noRoot: true });
    const e = await failure(ensureKvm("true", deps));
    expect(e.code).toBe("KVM_UNAVAILABLE");
    expect(e.message).toContain("uid 1001 cannot open it");
    expect(e.hint).toMatch(/kvm group.*passwordless sudo.*enable-kvm: auto/);
    expect(ran).toEqual([]);
  });

  it("auto: checks the result, and reports when the device stays unusable after both tries", async () => {
    const { deps, ran } = fakeHost({ inert: true });
    const r = await ensureKvm("auto", deps);
    expect(r.state).toBe("not-writable");
    expect(r.message).toContain("/dev/kvm is still not usable by uid 1001 after trying");
    expect(r.message).toContain("setfacl -m u:1001:rw /dev/kvm ran, but the device is still not writable");
    expect(r.message).toContain("chmod o+rw /dev/kvm ran, but the device is still not writable");
    expect(ran).toHaveLength(2);
  });

  it("true: fails the step when the device stays unusable after both tries", async () => {
    const { deps } = fakeHost({ inert: true, noSetfacl: true });
    const e = await failure(ensureKvm("true", deps));
    expect(e.code).toBe("KVM_UNAVAILABLE");
    expect(e.message).toContain("setfacl is not installed");
    expect(e.message).toContain("chmod o+rw /dev/kvm ran, but the device is still not writable");
  });

  it("never installs a udev rule or runs anything but setfacl and chmod on /dev/kvm", async () => {
    const hosts: FakeHost[] = [{}, { noSetfacl: true }, { aclRefused: true }, { inert: true }];
    const all: string[][] = [];
    for (const h of hosts) {
      for (const mode of MODES) {
        const { deps, ran } = fakeHost(h);
        await ensureKvm(mode, deps).catch(() => undefined);
        all.push(...ran);
      }
    }
    expect(all.length).toBeGreaterThan(0);
    for (const argv of all) {
      expect([SETFACL, "chmod"]).toContain(argv[0]);
      expect(argv.at(-1)).toBe("/dev/kvm");
    }
  });
});

describe("the host's KvmDeps", () => {
  it("finds installed commands by absolute path, and says when one is not installed", () => {
    const deps = hostKvmDeps();
    expect(deps.which("sh")).toMatch(/^\/.*\/sh$/);
    expect(deps.which("hexclave-no-such-command")).toBeUndefined();
    expect(deps.device).toBe("/dev/kvm");
  });
});
