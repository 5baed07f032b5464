// Starts one worker under wrangler's own dev stack (the same node + proxy workerd + worker
// workerd that `wrangler dev` runs), with or without the DevTools inspector, on 127.0.0.1,
// and prints one JSON line {"url", "pid"} once it answers. Stops on SIGTERM/SIGINT.
//
//   node bench/start-worker.mjs --config wrangler.toml --port 8787 [--inspector] \
//        [--persist DIR] [--var K=V]... [--secret K=V]...
//
// `wrangler dev` on the command line cannot turn the inspector off; its API can
// (dev.inspector = false), which is why the benchmark starts workers through this.
import { unstable_startWorker } from "wrangler";

const args = process.argv.slice(2);
const opt = { config: "wrangler.toml", port: 0, inspector: false, persist: undefined, vars: {}, secrets: {} };
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  const kv = () => {
    const s = args[++i];
    const at = s.indexOf("=");
    return [s.slice(0, at), s.slice(at + 1)];
  };
  if (a === "--config") opt.config = args[++i];
  else if (a === "--port") opt.port = Number(args[++i]);
  else if (a === "--inspector") opt.inspector = true;
  else if (a === "--persist") opt.persist = args[++i];
  else if (a === "--var") {
    const [k, v] = kv();
    opt.vars[k] = v;
  } else if (a === "--secret") {
    const [k, v] = kv();
    opt.secrets[k] = v;
  } else {
    console.error(`unknown argument ${a}`);
    process.exit(2);
  }
}

const bindings = {};
for (const [k, v] of Object.entries(opt.vars)) bindings[k] = { type: "plain_text", value: v };
for (const [k, v] of Object.entries(opt.secrets)) bindings[k] = { type: "secret_text", value: v };

const worker = await unstable_startWorker({
  config: opt.config,
  bindings,
  dev: {
    server: { hostname: "127.0.0.1", port: opt.port },
    inspector: opt.inspector ? { hostname: "127.0.0.1", port: 0 } : false,
    persist: opt.persist,
    logLevel: "error",
    watch: false,
  },
});
await worker.ready;
const url = await worker.url;
console.log(JSON.stringify({ url: url.toString().replace(/\/$/, ""), pid: process.pid }));

let stopping = false;
const stop = async () => {
  if (stopping) return;
  stopping = true;
  await Promise.race([worker.dispose(), new Promise((r) => setTimeout(r, 10_000))]);
  process.exit(0);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
