import { z } from "zod";

/**
 * zod schemas for the fields of QMP messages and replies the engine reads.
 * Only the used fields are declared; everything else is stripped.
 */

const versionTriple = z.object({ major: z.number().int(), minor: z.number().int(), micro: z.number().int() });

export const qmpVersionSchema = z.object({ qemu: versionTriple, package: z.string() });
export type QmpVersion = z.infer<typeof qmpVersionSchema>;

export const qmpGreetingSchema = z.object({
  QMP: z.object({ version: qmpVersionSchema, capabilities: z.array(z.string()) }),
});
export interface QmpGreeting {
  version: QmpVersion;
  capabilities: string[];
}

export const qmpEventSchema = z.object({
  event: z.string(),
  data: z.record(z.string(), z.unknown()).optional(),
  timestamp: z.object({ seconds: z.number(), microseconds: z.number() }).optional(),
});
export interface QmpEvent<D = Record<string, unknown>> {
  event: string;
  data: D;
  timestamp: { seconds: number; microseconds: number };
}

export const qmpErrorSchema = z.object({ class: z.string(), desc: z.string() });

export const statusInfoSchema = z.object({ status: z.string(), running: z.boolean() });
export type QmpStatus = z.infer<typeof statusInfoSchema>;

export const migrationInfoSchema = z.object({
  status: z.string().optional(),
  "error-desc": z.string().optional(),
  "total-time": z.number().optional(),
  "expected-downtime": z.number().optional(),
  downtime: z.number().optional(),
  ram: z
    .object({
      transferred: z.number(),
      remaining: z.number(),
      total: z.number(),
    })
    .optional(),
});
export type QmpMigrationInfo = z.infer<typeof migrationInfoSchema>;

export const migrateCapabilitiesSchema = z.array(z.object({ capability: z.string(), state: z.boolean() }));
export type QmpMigrateCapability = z.infer<typeof migrateCapabilitiesSchema>[number];

export const machinesSchema = z.array(
  z.object({
    name: z.string(),
    alias: z.string().optional(),
    "is-default": z.boolean().optional(),
    deprecated: z.boolean().optional(),
  }),
);
export type QmpMachineInfo = z.infer<typeof machinesSchema>[number];

export const kvmInfoSchema = z.object({ enabled: z.boolean(), present: z.boolean() });
export type QmpKvmInfo = z.infer<typeof kvmInfoSchema>;
