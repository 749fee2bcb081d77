import { readFileSync } from "node:fs";

/** The version of this cube checkout, from package.json (read once, at import). */
export const CUBE_VERSION: string = (
  JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as {
    version: string;
  }
).version;
