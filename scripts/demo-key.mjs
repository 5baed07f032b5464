// Which Mistral key `make demo` may use: MISTRAL_API_KEY from the environment or .dev.vars,
// unless it is a placeholder (the value of .dev.vars.example, `your-...`, `change-me...`,
// `<...>`, empty), which would send every query to the real API with a key it refuses.
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";

/** The value of `name` in a dotenv-style file, or undefined. */
export function dotenvValue(file, name) {
  if (!existsSync(file)) return undefined;
  const line = readFileSync(file, "utf8")
    .split("\n")
    .find((l) => new RegExp(`^\\s*${name}\\s*=`).test(l));
  return line?.split("=").slice(1).join("=").trim().replace(/^["']|["']$/g, "");
}

/** Whether `value` is a placeholder rather than a key; `example` is .dev.vars.example's value. */
export function isPlaceholderKey(value, example) {
  const v = (value ?? "").trim();
  if (v === "" || (example && v === example.trim())) return true;
  return (
    /^your[-_ ]/i.test(v) ||
    /^change[-_ ]?me/i.test(v) ||
    /^<.*>$/.test(v) ||
    /^(x+|\.+|\*+|placeholder|todo|tbd|none|null|undefined|replace[-_ ]?me.*|insert[-_ ].*)$/i.test(v)
  );
}

/**
 * The Mistral key the demo should use, where it came from, and a placeholder it skipped:
 * `{ key, source, placeholder }` (key undefined: use the local stand-in).
 */
export function demoKey(root, env = process.env) {
  const example = dotenvValue(path.join(root, ".dev.vars.example"), "MISTRAL_API_KEY");
  const candidates = [
    ["MISTRAL_API_KEY in the environment", env.MISTRAL_API_KEY],
    ["MISTRAL_API_KEY in .dev.vars", dotenvValue(path.join(root, ".dev.vars"), "MISTRAL_API_KEY")],
  ];
  let placeholder;
  for (const [source, value] of candidates) {
    if (value === undefined) continue;
    if (!isPlaceholderKey(value, example)) return { key: value.trim(), source };
    placeholder ??= { source, value };
  }
  return { key: undefined, placeholder };
}
