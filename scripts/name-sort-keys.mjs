// Rewrites the function names of a wasm file's `name` section into the keys that
// `wasm-opt --reorder-functions-by-name` should sort by, just before that pass (and the
// stripping of the section) in `make build`. The order of the functions is what gzip sees:
// similar functions side by side compress better. Sorting by the names as they are already
// groups one module's functions and one generic's instances, but puts every trait impl
// (`<llm_mux_core::api::QueryResponse as serde::Serialize>::serialize`) apart, sorted by
// the type's path; the keys put a trait's impls of one method side by side instead, and
// drop the leading `<` or `&` of other names (~1.1 KB smaller gzipped). The names are
// debugging data only, removed right after; nothing else changes.
// Usage: node scripts/name-sort-keys.mjs FILE.wasm
import fs from "node:fs";

import { readU32, u32Bytes } from "./wasm-leb.mjs";

const file = process.argv[2];
const wasm = fs.readFileSync(file);

const withLength = (bytes) => Buffer.concat([Buffer.from(u32Bytes(bytes.length)), bytes]);

// `<Type as Trait>::method`: by trait and method (one trait's impls side by side);
// anything else by its path without a leading `<` or `&`; then by the whole name.
function sortKey(name) {
  const path = name.replace(/::h[0-9a-f]{16}(\[\d+\])?$/, "");
  const impl = /^<(.*?) as (.*?)>::(.*)$/.exec(path);
  return `${impl ? `${impl[2]}|${impl[3]}` : path.replace(/^[<&]+/, "")}|${name}`;
}

// The function names subsection (id 1) with each name replaced by its sort key.
function functionNames(sub) {
  const [count, first] = readU32(sub, 0);
  const parts = [Buffer.from(u32Bytes(count))];
  let at = first;
  for (let i = 0; i < count; i++) {
    const [index, afterIndex] = readU32(sub, at);
    const [length, start] = readU32(sub, afterIndex);
    const name = sub.subarray(start, start + length).toString("utf8");
    parts.push(Buffer.from(u32Bytes(index)), withLength(Buffer.from(sortKey(name), "utf8")));
    at = start + length;
  }
  return Buffer.concat(parts);
}

if (wasm.readUInt32LE(0) !== 0x6d736100) throw new Error("name-sort-keys: not a wasm file");
const parts = [wasm.subarray(0, 8)];
let at = 8;
let found = false;
while (at < wasm.length) {
  const id = wasm[at];
  const [size, start] = readU32(wasm, at + 1);
  const end = start + size;
  const [nameLength, nameStart] = id === 0 ? readU32(wasm, start) : [0, start];
  if (id !== 0 || wasm.subarray(nameStart, nameStart + nameLength).toString() !== "name") {
    parts.push(wasm.subarray(at, end));
    at = end;
    continue;
  }
  const body = [wasm.subarray(start, nameStart + nameLength)];
  let sub = nameStart + nameLength;
  while (sub < end) {
    const subId = wasm[sub];
    const [subSize, subStart] = readU32(wasm, sub + 1);
    let content = wasm.subarray(subStart, subStart + subSize);
    if (subId === 1) {
      content = functionNames(content);
      found = true;
    }
    body.push(Buffer.from([subId]), withLength(content));
    sub = subStart + subSize;
  }
  parts.push(Buffer.from([0]), withLength(Buffer.concat(body)));
  at = end;
}
if (!found) throw new Error("name-sort-keys: no function names (was the name section kept?)");
fs.writeFileSync(file, Buffer.concat(parts));
