/**
 * From zod's JSON Schema (target openapi-3.0) to a structural schema the API
 * server accepts for a CRD: every node has a type; no $ref (definitions are
 * inlined, cycles refused); no additionalProperties beside properties (nor
 * additionalProperties: false: pruning drops unknown fields); anyOf of
 * enums of one type folded into one enum; nothing outside the keywords of
 * apiextensions/v1 JSONSchemaProps. Pure; throws StructuralSchemaError with
 * the JSON path of anything it cannot express.
 */
export type JsonSchema = { [key: string]: unknown };

export class StructuralSchemaError extends Error {
  constructor(
    readonly path: string,
    message: string,
  ) {
    super(`${path}: ${message}`);
    this.name = "StructuralSchemaError";
  }
}

/** The keywords of apiextensions.k8s.io/v1 JSONSchemaProps a CRD may use (x-kubernetes-* aside). */
const ALLOWED = new Set([
  "type",
  "format",
  "title",
  "description",
  "default",
  "maximum",
  "exclusiveMaximum",
  "minimum",
  "exclusiveMinimum",
  "maxLength",
  "minLength",
  "pattern",
  "maxItems",
  "minItems",
  "uniqueItems",
  "multipleOf",
  "enum",
  "maxProperties",
  "minProperties",
  "required",
  "items",
  "allOf",
  "oneOf",
  "anyOf",
  "not",
  "properties",
  "additionalProperties",
  "nullable",
  "example",
]);
/** Keywords zod emits that carry nothing the API server uses. */
const DROPPED = new Set(["$schema", "$id", "id", "propertyNames", "examples", "$comment"]);
const TYPES = new Set(["object", "array", "string", "integer", "number", "boolean"]);
/** zod's bounds for a plain int: the safe-integer range, which says nothing for int64 fields. */
const SAFE = Number.MAX_SAFE_INTEGER;

export function toStructural(schema: JsonSchema): JsonSchema {
  const defs = {
    ...((schema.$defs as Record<string, JsonSchema> | undefined) ?? {}),
    ...((schema.definitions as Record<string, JsonSchema> | undefined) ?? {}),
  };
  return convert(schema, "#", defs, []);
}

function resolveRef(ref: string, defs: Record<string, JsonSchema>, path: string): [string, JsonSchema] {
  const m = /^#\/(?:\$defs|definitions)\/(.+)$/.exec(ref);
  const name = m?.[1];
  const target = name === undefined ? undefined : defs[name];
  if (name === undefined || !target) throw new StructuralSchemaError(path, `cannot resolve $ref ${ref}`);
  return [name, target];
}

function convert(
  node: JsonSchema,
  path: string,
  defs: Record<string, JsonSchema>,
  seen: string[],
): JsonSchema {
  if (typeof node !== "object" || node === null || Array.isArray(node)) {
    throw new StructuralSchemaError(path, "a schema must be an object");
  }
  if (typeof node.$ref === "string") {
    const [name, target] = resolveRef(node.$ref, defs, path);
    if (seen.includes(name)) {
      throw new StructuralSchemaError(path, `$ref ${node.$ref} is recursive; a CRD schema cannot be`);
    }
    const { $ref: _ref, ...siblings } = node;
    return convert({ ...target, ...siblings }, path, defs, [...seen, name]);
  }
  const out: JsonSchema = {};
  for (const [key, value] of Object.entries(node)) {
    if (key === "$defs" || key === "definitions" || DROPPED.has(key)) continue;
    if (key.startsWith("x-kubernetes-")) {
      out[key] = value;
      continue;
    }
    if (!ALLOWED.has(key))
      throw new StructuralSchemaError(path, `keyword ${key} has no place in a CRD schema`);
    out[key] = value;
  }
  if (Object.keys(out).length === 0 || (Object.keys(out).length === 1 && "description" in out)) {
    // z.unknown()/z.any(): anything goes, kept as is.
    return { ...out, "x-kubernetes-preserve-unknown-fields": true };
  }
  foldEnumUnion(out, path);
  if (out.type === "integer") {
    if (out.minimum === -SAFE) delete out.minimum;
    if (out.maximum === SAFE) delete out.maximum;
  }
  if (out.format === "date-time") delete out.pattern;
  if (Array.isArray(out.required) && out.required.length === 0) delete out.required;

  if (out.properties !== undefined) {
    const props = out.properties as Record<string, JsonSchema>;
    out.properties = Object.fromEntries(
      Object.entries(props).map(([k, v]) => [k, convert(v, `${path}.properties.${k}`, defs, seen)]),
    );
    // Structural: properties and additionalProperties are mutually exclusive; unknown fields are pruned.
    delete out.additionalProperties;
  } else if (out.additionalProperties === false) {
    delete out.additionalProperties;
  } else if (typeof out.additionalProperties === "object" && out.additionalProperties !== null) {
    out.additionalProperties = convert(
      out.additionalProperties as JsonSchema,
      `${path}.additionalProperties`,
      defs,
      seen,
    );
  }
  if (out.items !== undefined) {
    if (Array.isArray(out.items)) throw new StructuralSchemaError(path, "tuple items are not structural");
    out.items = convert(out.items as JsonSchema, `${path}.items`, defs, seen);
  }
  for (const k of ["allOf", "oneOf", "anyOf", "not"] as const) {
    if (out[k] !== undefined) {
      throw new StructuralSchemaError(
        path,
        `${k} of different shapes cannot be made structural; use one object with optional fields`,
      );
    }
  }
  checkType(out, path);
  return out;
}

/** anyOf [{type: T, enum: [a]}, {type: T, enum: [b]}] → {type: T, enum: [a, b]}. */
function foldEnumUnion(out: JsonSchema, path: string): void {
  const branches = out.anyOf ?? out.oneOf;
  if (!Array.isArray(branches)) return;
  const types = new Set(branches.map((b: JsonSchema) => b.type));
  const allEnums = branches.every(
    (b: JsonSchema) => Array.isArray(b.enum) && Object.keys(b).every((k) => k === "type" || k === "enum"),
  );
  if (!allEnums || types.size !== 1) return;
  const [type] = types;
  if (out.type !== undefined && out.type !== type) {
    throw new StructuralSchemaError(
      path,
      `anyOf branches of type ${String(type)} under type ${String(out.type)}`,
    );
  }
  delete out.anyOf;
  delete out.oneOf;
  out.type = type;
  out.enum = [...new Set(branches.flatMap((b: JsonSchema) => b.enum as unknown[]))];
}

function checkType(out: JsonSchema, path: string): void {
  if (out["x-kubernetes-preserve-unknown-fields"] === true || out["x-kubernetes-int-or-string"] === true)
    return;
  if (typeof out.type !== "string" || !TYPES.has(out.type)) {
    throw new StructuralSchemaError(
      path,
      `every node of a structural schema needs a type (got ${JSON.stringify(out.type)})`,
    );
  }
  if (out.type !== "object" && (out.properties !== undefined || out.additionalProperties !== undefined)) {
    throw new StructuralSchemaError(path, `properties on a node of type ${out.type}`);
  }
  if (out.type !== "array" && out.items !== undefined) {
    throw new StructuralSchemaError(path, `items on a node of type ${out.type}`);
  }
  if (out.type === "array" && out.items === undefined) {
    throw new StructuralSchemaError(path, "an array needs items");
  }
}
