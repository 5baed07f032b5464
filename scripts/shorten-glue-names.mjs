// Renames the wasm module's imports from its JS glue and its exports to short names, in
// the wasm and in the glue alike: wasm-bindgen names each import after its binding plus a
// 16-digit hash (`__wbg_now_463ac581d2fc7ea3`) and exports after Rust items
// (`__wbg_get_r2range_offset`), and every name is written twice, once in each file. The
// hashes do not compress: the names cost ~5 KB of the gzipped bundle. Nothing but the
// names changes (same imports and exports, same order, same functions).
//
// An import is renamed only where the glue holds its name exactly once (its key in the
// imports object), an export only where every use of its name in the glue reads it from
// the instance's exports object (`_.name`); any other name is left as it was.
// Usage: node scripts/shorten-glue-names.mjs DIR (with DIR/index_bg.wasm and DIR/index.js)
import fs from "node:fs";
import path from "node:path";

import { readU32, u32Bytes } from "./wasm-leb.mjs";

const GLUE_MODULE = "./index_bg.js";
const dir = process.argv[2];
const wasmPath = path.join(dir, "index_bg.wasm");
const jsPath = path.join(dir, "index.js");
const wasm = fs.readFileSync(wasmPath);
let js = fs.readFileSync(jsPath, "utf8");

function name(buf, at) {
  const [length, start] = readU32(buf, at);
  return [buf.subarray(start, start + length).toString("utf8"), start + length];
}

function nameBytes(text) {
  const bytes = Buffer.from(text, "utf8");
  return [...u32Bytes(bytes.length), ...bytes];
}

// Where an import's description ends (kinds: function, table, memory, global, tag).
function skipDescription(buf, at) {
  const kind = buf[at++];
  const limits = (at) => {
    const flags = buf[at++];
    [, at] = readU32(buf, at);
    if (flags & 1) [, at] = readU32(buf, at);
    return at;
  };
  switch (kind) {
    case 0:
      return readU32(buf, at)[1];
    case 1: {
      const refType = buf[at++];
      if (refType === 0x63 || refType === 0x64) [, at] = readU32(buf, at);
      return limits(at);
    }
    case 2:
      return limits(at);
    case 3:
      return at + 2;
    case 4:
      return readU32(buf, at + 1)[1];
    default:
      throw new Error(`shorten-glue-names: unknown import kind ${kind}`);
  }
}

// a, b, ..., Z, then aa, ab, ...: property names in the glue's imports object.
const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
function shortName(index) {
  let text = "";
  do {
    text = letters[index % letters.length] + text;
    index = Math.floor(index / letters.length) - 1;
  } while (index >= 0);
  return text;
}

const escape = (text) => text.replace(/[$]/g, "\\$");
const occurrences = (text) =>
  new RegExp(`(?<![\\w$])${escape(text)}(?![\\w$])`, "g");

// The glue's variable holding the instance's exports (`_=$.exports`).
const exportsVars = new Set(
  [...js.matchAll(/(?<![\w$])([\w$]+)=[\w$]+\.exports(?![\w$])/g)].map((m) => m[1]),
);
if (exportsVars.size !== 1) throw new Error("shorten-glue-names: exports object not found");
const [exportsVar] = exportsVars;

// `exports.field` in the glue.
const readsOf = (field) =>
  new RegExp(`(?<![\\w$])${escape(exportsVar)}\\.${escape(field)}(?![\\w$])`, "g");

// The export section with the exports the glue reads only as `exports.name` renamed.
function exportSection(start, end) {
  const [count, first] = readU32(wasm, start);
  const entries = [];
  let entry = first;
  for (let i = 0; i < count; i++) {
    const [field, afterField] = name(wasm, entry);
    const [, afterIndex] = readU32(wasm, afterField + 1);
    entries.push([field, wasm.subarray(afterField, afterIndex)]);
    entry = afterIndex;
  }
  if (entry !== end) throw new Error("shorten-glue-names: export section not read to its end");
  const fields = new Set(entries.map(([field]) => field));
  const body = [...u32Bytes(count)];
  let next = 0;
  let renamed = 0;
  for (const [field, description] of entries) {
    let newField = field;
    const uses = js.match(occurrences(field)) || [];
    const reads = js.match(readsOf(field)) || [];
    if (uses.length > 0 && uses.length === reads.length) {
      let candidate = shortName(next++);
      while (fields.has(candidate)) candidate = shortName(next++);
      js = js.replace(readsOf(field), `${exportsVar}.${candidate}`);
      newField = candidate;
      renamed++;
    }
    body.push(...nameBytes(newField), ...description);
  }
  return [Buffer.from([7, ...u32Bytes(body.length), ...body]), renamed];
}

// The glue's module name too (`"./index_bg.js":{...}` in the imports object, written
// before each of its imports in the wasm), when the glue names it once.
const glueModuleKey = `${JSON.stringify(GLUE_MODULE)}:`;
const glueModule = js.split(glueModuleKey).length === 2 ? "a" : GLUE_MODULE;
js = js.replace(glueModuleKey, `${glueModule}:`);

if (wasm.readUInt32LE(0) !== 0x6d736100) throw new Error("shorten-glue-names: not a wasm file");
const parts = [wasm.subarray(0, 8)];
let at = 8;
let renamed = 0;
let kept = 0;
let renamedExports = 0;
while (at < wasm.length) {
  const id = wasm[at];
  const [size, start] = readU32(wasm, at + 1);
  const end = start + size;
  if (id === 7) {
    const [section, count] = exportSection(start, end);
    parts.push(section);
    renamedExports = count;
    at = end;
    continue;
  }
  if (id !== 2) {
    parts.push(wasm.subarray(at, end));
    at = end;
    continue;
  }
  const [count, first] = readU32(wasm, start);
  const fields = new Set();
  for (let i = 0, entry = first; i < count; i++) {
    const [, afterModule] = name(wasm, entry);
    const [field, afterField] = name(wasm, afterModule);
    fields.add(field);
    entry = skipDescription(wasm, afterField);
  }
  const body = [...u32Bytes(count)];
  let entry = first;
  let next = 0;
  for (let i = 0; i < count; i++) {
    const [module, afterModule] = name(wasm, entry);
    const [field, afterField] = name(wasm, afterModule);
    const afterDescription = skipDescription(wasm, afterField);
    let newField = field;
    if (module === GLUE_MODULE) {
      const found = js.match(occurrences(field)) || [];
      // A key of the imports object: only another key there could clash, and every
      // other key is an import's name (long ones from wasm-bindgen, or new short ones).
      if (found.length === 1) {
        let candidate = shortName(next++);
        while (fields.has(candidate)) candidate = shortName(next++);
        js = js.replace(occurrences(field), candidate);
        newField = candidate;
        renamed++;
      } else {
        kept++;
      }
    }
    body.push(...nameBytes(module === GLUE_MODULE ? glueModule : module), ...nameBytes(newField));
    body.push(...wasm.subarray(afterField, afterDescription));
    entry = afterDescription;
  }
  if (entry !== end) throw new Error("shorten-glue-names: import section not read to its end");
  parts.push(Buffer.from([2, ...u32Bytes(body.length), ...body]));
  at = end;
}

fs.writeFileSync(wasmPath, Buffer.concat(parts));
fs.writeFileSync(jsPath, js);
console.log(
  `shorten-glue-names: ${renamed} imports renamed (${kept} kept), ${renamedExports} exports renamed`,
);
