// Validates an OpenAPI document (a file, or "-" for stdin) against the official
// OpenAPI 3.x JSON Schemas with @seriousme/openapi-schema-validator, and checks
// that every $ref resolves. Prints "valid <version>" or the errors; exits 1 when
// the document is not valid. Used by proxy/test/api_surface.sh.
import { readFileSync } from "node:fs";
import { Validator } from "@seriousme/openapi-schema-validator";

const file = process.argv[2];
const text = readFileSync(file === "-" ? 0 : file, "utf8");
const validator = new Validator();
const res = await validator.validate(JSON.parse(text));
if (!res.valid) {
  console.log("invalid:", JSON.stringify(res.errors, null, 1).slice(0, 4000));
  process.exit(1);
}
try {
  validator.resolveRefs();
} catch (e) {
  console.log("invalid: a $ref does not resolve:", e.message);
  process.exit(1);
}
console.log("valid", validator.version);
