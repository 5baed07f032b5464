// Unsigned LEB128, as the wasm binary format writes sizes, counts and indices: shared by
// the build's wasm post-processing scripts (name-sort-keys.mjs, shorten-glue-names.mjs).

/** The number at `at` in `buf`, and where the next field starts. */
export function readU32(buf, at) {
  let value = 0;
  let scale = 1;
  for (;;) {
    const byte = buf[at++];
    value += (byte & 0x7f) * scale;
    scale *= 128;
    if (byte < 0x80) return [value, at];
  }
}

/** The bytes of `value`. */
export function u32Bytes(value) {
  const out = [];
  do {
    let byte = value % 128;
    value = Math.floor(value / 128);
    if (value > 0) byte |= 0x80;
    out.push(byte);
  } while (value > 0);
  return out;
}
