/**
 * The project's version, read from `deno.json` (`"version"`), so a release bumps one line and
 * every program's `--version`, the CSI GetPluginInfo answer and the self-tests agree.
 *
 * @module
 */

import denoJson from "../deno.json" with { type: "json" };

/** The version of every program in this repository, e.g. `0.1.0`. */
export const VERSION: string = denoJson.version;
