/** The Action's inputs, validated at the edge with zod: one error lists every bad input. */
import { z } from "zod";
import { ConfigError } from "../engine/errors.js";

const wholeNumber = (min: number, max: number, example: string) =>
  z
    .string()
    .trim()
    .refine((s) => s === "" || (/^\d+$/.test(s) && Number(s) >= min && Number(s) <= max), {
      message: `must be a whole number from ${min} to ${max} (e.g. ${example})`,
    });

const InputsSchema = z.object({
  image: z.string().trim(),
  ram: wholeNumber(512, 262144, "4096"),
  cpus: wholeNumber(1, 64, "4"),
  snapshot: z.enum(["auto", "never", "required"], { message: "must be auto, never or required" }),
  cache: z.enum(["actions", "local", "none"], { message: "must be actions, local or none" }),
});

export type ActionInputs = z.infer<typeof InputsSchema>;

export function readActionInputs(get: (name: string) => string): ActionInputs {
  const raw = {
    image: get("image"),
    ram: get("ram"),
    cpus: get("cpus"),
    snapshot: get("snapshot") || "auto",
    cache: get("cache") || "actions",
  };
  const parsed = InputsSchema.safeParse(raw);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => {
      const key = String(i.path[0]);
      return `input ${key}="${raw[key as keyof typeof raw]}": ${i.message}`;
    });
    throw new ConfigError(problems, "fix the `with:` block of the hexclave/emulator-action step");
  }
  return parsed.data;
}
