/**
 * The README's TypeScript example type-checks against this package as an
 * installed caller sees it (`import ... from "@liya/engine-client"`).
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { it } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const PACKAGE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const README = path.resolve(PACKAGE, "../../README.md");

function example(markdown: string): string {
  const section = markdown.split("\n## Calling it from TypeScript\n")[1]?.split("\n## ")[0] ?? "";
  const blocks = [...section.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]!);
  assert.equal(blocks.length, 1, "one ts example in the section");
  return blocks[0]!;
}

it("the README example compiles", async () => {
  const code = example(await readFile(README, "utf8"));
  assert.match(code, /from "@liya\/engine-client"/);
  // Inside the package, so its name resolves to it (package self-reference).
  const dir = await mkdtemp(path.join(PACKAGE, "dist", "readme-"));
  try {
    const file = path.join(dir, "example.ts");
    await writeFile(file, code);
    const tsc = path.join(PACKAGE, "node_modules", ".bin", "tsc");
    const args = ["--noEmit", "--strict", "--skipLibCheck", "--target", "ES2022"];
    args.push("--module", "NodeNext", "--moduleResolution", "NodeNext", "--types", "node", file);
    await promisify(execFile)(tsc, args, { cwd: PACKAGE }).catch((err: { stdout: string }) => {
      assert.fail(`tsc rejects the README example:\n${err.stdout}`);
    });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
