/**
 * The Action's main step. Logic lives here (the entry file is one line), the
 * way actions/cache splits restoreImpl from its entry point.
 */
import * as core from "@actions/core";
import { describeError } from "../engine/errors.js";
import { readActionInputs } from "./inputs.js";

export async function runMain(): Promise<void> {
  try {
    const inputs = readActionInputs((name) => core.getInput(name));
    core.info(`hexclave emulator: image ${inputs.image || "(default)"}, snapshot ${inputs.snapshot}`);
    core.setOutput("accelerator", "pending");
  } catch (err) {
    core.setFailed(describeError(err));
  }
}
