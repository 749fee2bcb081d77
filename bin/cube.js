#!/usr/bin/env node
// The `cube` executable: registers tsx so the TypeScript sources run as they are (no
// build step), then hands over to cli/main.ts.
import { register } from "tsx/esm/api";

register();
await import("../cli/main.ts");
