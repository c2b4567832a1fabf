import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { toStructural, StructuralSchemaError, type JsonSchema } from "../../src/controller/crd/structural.js";
import { emulatorCrd, openApiSchema, schemaOf } from "../../src/controller/crd/manifest.js";
import { crdFiles, crdYaml } from "../../src/controller/crd/yaml.js";
import { claimCrd, poolCrd } from "../../src/controller/crd/pool-manifest.js";
import { memoryMiB, parseSpec } from "../../src/controller/crd/types.js";
import { REPO_ROOT } from "../support/tools.js";

/** Every node of a schema, with its path. */
function* nodes(s: JsonSchema, path = "#"): Generator<[string, JsonSchema]> {
  yield [path, s];
  for (const [k, v] of Object.entries((s.properties as Record<string, JsonSchema>) ?? {}))
    yield* nodes(v, `${path}.${k}`);
  if (s.items) yield* nodes(s.items as JsonSchema, `${path}[]`);
  if (typeof s.additionalProperties === "object")
    yield* nodes(s.additionalProperties as JsonSchema, `${path}{}`);
}

describe("structural schema conversion", () => {
  it("inlines $ref definitions and refuses recursive ones", () => {
    const out = toStructural({
      type: "object",
      properties: { a: { $ref: "#/$defs/Port" }, b: { $ref: "#/$defs/Port", description: "b" } },
      $defs: { Port: { type: "integer", minimum: 1 } },
    });
    expect(out).toEqual({
      type: "object",
      properties: {
        a: { type: "integer", minimum: 1 },
        b: { type: "integer", minimum: 1, description: "b" },
      },
    });
    const recursive = {
      type: "object",
      properties: { node: { $ref: "#/$defs/Node" } },
      $defs: { Node: { type: "object", properties: { next: { $ref: "#/$defs/Node" } } } },
    };
    expect(() => toStructural(recursive)).toThrow(/recursive/);
  });

  it("drops additionalProperties beside properties and additionalProperties: false", () => {
    const out = toStructural({
      type: "object",
      properties: { x: { type: "string" } },
      additionalProperties: false,
    });
    expect(out).toEqual({ type: "object", properties: { x: { type: "string" } } });
    expect(toStructural({ type: "object", additionalProperties: false })).toEqual({ type: "object" });
  });

  it("keeps maps as additionalProperties without propertyNames", () => {
    const out = schemaOf(z.record(z.string(), z.number()));
    expect(out).toEqual({ type: "object", additionalProperties: { type: "number" } });
  });

  it("folds a union of literals into one enum and refuses unions of shapes", () => {
    expect(schemaOf(z.union([z.literal("a"), z.literal("b")]))).toEqual({ type: "string", enum: ["a", "b"] });
    expect(() => schemaOf(z.union([z.string(), z.object({ a: z.string() })]))).toThrow(StructuralSchemaError);
  });

  it("turns z.unknown() into preserved unknown fields and drops zod's safe-integer bounds", () => {
    expect(schemaOf(z.object({ free: z.unknown(), n: z.number().int() }))).toEqual({
      type: "object",
      properties: { free: { "x-kubernetes-preserve-unknown-fields": true }, n: { type: "integer" } },
      required: ["free", "n"],
    });
  });

  it("names the path of what it cannot express", () => {
    expect(() => toStructural({ type: "object", properties: { a: { if: {} } } })).toThrow(
      /#\.properties\.a: keyword if/,
    );
    expect(() =>
      toStructural({ type: "object", properties: { a: { description: "no type", minimum: 1 } } }),
    ).toThrow(/#\.properties\.a: every node/);
  });

  it("keeps defaults, nullable and x-kubernetes-* extensions", () => {
    const out = schemaOf(
      z.object({
        n: z.number().int().min(1).default(2),
        s: z.string().nullable().optional(),
        l: z
          .array(z.object({ k: z.string() }))
          .meta({ "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["k"] }),
      }),
    );
    expect(out.properties).toMatchObject({
      n: { type: "integer", minimum: 1, default: 2 },
      s: { type: "string", nullable: true },
      l: { type: "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["k"] },
    });
    expect(out.required).toEqual(["l"]);
  });
});

describe("the Emulator CRD", () => {
  it("is structural: every node typed, no $ref, no additionalProperties beside properties", () => {
    const schema = openApiSchema();
    const seen = [...nodes(schema)];
    expect(seen.length).toBeGreaterThan(40);
    for (const [path, node] of seen) {
      expect(JSON.stringify(node), path).not.toContain("$ref");
      expect(node.type ?? node["x-kubernetes-preserve-unknown-fields"], path).toBeDefined();
      if (node.properties) expect(node.additionalProperties, path).toBeUndefined();
      expect(node.additionalProperties === false, path).toBe(false);
      for (const k of ["anyOf", "oneOf", "allOf", "$defs", "propertyNames", "const"])
        expect(node[k], `${path} ${k}`).toBeUndefined();
    }
  });

  it("is namespaced, short-named emu, with a status subresource and the printer columns", () => {
    const crd = emulatorCrd() as { spec: Record<string, unknown> & { versions: Record<string, unknown>[] } };
    expect(crd.spec.scope).toBe("Namespaced");
    expect((crd.spec.names as { shortNames: string[] }).shortNames).toEqual(["emu"]);
    const v = crd.spec.versions[0]!;
    expect(v.name).toBe("v1alpha1");
    expect(v.subresources).toEqual({ status: {} });
    const columns = (v.additionalPrinterColumns as { name: string; jsonPath: string }[]).map((c) => c.name);
    expect(columns.slice(0, 5)).toEqual(["Ready", "Boot", "Startup", "Node", "Age"]);
  });

  it("is committed as generated (npx tsx scripts/k8s/generate-crd.ts)", () => {
    const committed = readFileSync(join(REPO_ROOT, "charts/hexclave-emulator/crds/emulators.yaml"), "utf8");
    expect(committed).toBe(crdYaml());
  });

  it("is committed with the EmulatorPool and EmulatorClaim CRDs as generated, and no other file", () => {
    const dir = join(REPO_ROOT, "charts/hexclave-emulator/crds");
    const files = crdFiles();
    expect(readdirSync(dir).sort()).toEqual(Object.keys(files).sort());
    for (const [file, text] of Object.entries(files))
      expect(readFileSync(join(dir, file), "utf8"), file).toBe(text);
  });
});

describe("the EmulatorPool and EmulatorClaim CRDs", () => {
  it("are structural, short-named emupool and emuclaim, with status subresources and printer columns", () => {
    for (const [crd, short, columns] of [
      [poolCrd(), "emupool", ["Desired", "Ready", "Creating", "Claimed", "Age"]],
      [claimCrd(), "emuclaim", ["Ready", "Pool", "Emulator", "Source", "Age"]],
    ] as const) {
      const spec = (crd as { spec: Record<string, unknown> & { versions: Record<string, unknown>[] } }).spec;
      expect((spec.names as { shortNames: string[] }).shortNames).toEqual([short]);
      const v = spec.versions[0]!;
      expect(v.subresources).toEqual({ status: {} });
      expect((v.additionalPrinterColumns as { name: string }[]).map((c) => c.name).slice(0, 5)).toEqual(
        columns,
      );
      const root = (v.schema as { openAPIV3Schema: JsonSchema }).openAPIV3Schema;
      for (const [path, node] of nodes(root)) {
        expect(JSON.stringify(node), path).not.toContain("$ref");
        expect(node.type ?? node["x-kubernetes-preserve-unknown-fields"], path).toBeDefined();
      }
    }
  });

  it("keeps the Emulator's spec, with its defaults, as the pool's template", () => {
    const root = (poolCrd() as { spec: { versions: { schema: { openAPIV3Schema: JsonSchema } }[] } }).spec
      .versions[0]!.schema.openAPIV3Schema;
    const spec = (root.properties as Record<string, JsonSchema>).spec!;
    const props = spec.properties as Record<string, JsonSchema>;
    expect(props.template).toMatchObject({ type: "object", required: ["image"] });
    expect(props.replicas).toMatchObject({ type: "integer", minimum: 0, default: 1 });
    expect(props.maxCreating).toMatchObject({ type: "integer", minimum: 1, default: 2 });
    expect(spec.required).toEqual(["template"]);
  });
});

describe("the spec as the controller reads it", () => {
  it("applies the defaults the CRD declares", () => {
    const r = parseSpec({ image: "/var/lib/hexclave-emulator/images/e.qcow2" });
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.spec).toMatchObject({
      resources: { memory: "4Gi", cpus: 2 },
      rotation: true,
      snapshot: "auto",
      service: { type: "ClusterIP", expose: ["dashboard", "backend", "minio", "inbucket", "mockOauth"] },
    });
  });

  it("refuses an image that is neither a URL nor an absolute path, and /images without a volume", () => {
    const bad = parseSpec({ image: "emulator.qcow2" });
    expect(bad.ok).toBe(false);
    if (!bad.ok) expect(bad.problems.join()).toMatch(/neither an http\(s\) URL nor an absolute path/);
    const noVolume = parseSpec({ image: "/images/e.qcow2" });
    expect(noVolume.ok).toBe(false);
    expect(parseSpec({ image: "/images/e.qcow2", imageVolume: { claimName: "images" } }).ok).toBe(true);
    expect(parseSpec({ image: "https://example.com/e.qcow2" }).ok).toBe(true);
  });

  it("names each invalid field", () => {
    const r = parseSpec({ image: "/x", resources: { memory: "4G", cpus: 0 }, ttlSeconds: 5 });
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.problems.some((p) => p.startsWith("spec.resources.memory"))).toBe(true);
      expect(r.problems.some((p) => p.startsWith("spec.resources.cpus"))).toBe(true);
      expect(r.problems.some((p) => p.startsWith("spec.ttlSeconds"))).toBe(true);
    }
  });

  it("reads memory quantities in Mi and Gi", () => {
    expect(memoryMiB("4Gi")).toBe(4096);
    expect(memoryMiB("512Mi")).toBe(512);
    expect(() => memoryMiB("4G")).toThrow();
  });
});
