#!/usr/bin/env python3
"""What takes the space in a wasm file: code bytes per function, grouped by crate/module,
from the `name` section (use the unstripped cargo output, e.g.
target/wasm32-unknown-unknown/release/llm_mux.wasm, before wasm-bindgen and wasm-opt).

    python3 scripts/wasm-size.py FILE.wasm [--top 40] [--depth 2]

A dependency-free stand-in for `twiggy top` (names are demangled with c++filt when present).
"""
import subprocess
import sys
from collections import defaultdict


def leb(b, i):
    r = s = 0
    while True:
        x = b[i]
        i += 1
        r |= (x & 0x7F) << s
        s += 7
        if x < 0x80:
            return r, i


def main():
    args = sys.argv[1:]
    path = args[0]
    top = int(args[args.index("--top") + 1]) if "--top" in args else 40
    depth = int(args[args.index("--depth") + 1]) if "--depth" in args else 2
    b = open(path, "rb").read()
    assert b[:4] == b"\0asm"
    i = 8
    sections = {}
    n_imported_funcs = 0
    code_sizes = []
    names = {}
    data_size = 0
    while i < len(b):
        sid = b[i]
        size, j = leb(b, i + 1)
        body = b[j : j + size]
        sections.setdefault(sid, 0)
        sections[sid] += size
        if sid == 2:  # imports
            k = 0
            cnt, k = leb(body, k)
            for _ in range(cnt):
                for _ in range(2):
                    ln, k = leb(body, k)
                    k += ln
                kind = body[k]
                k += 1
                if kind == 0:
                    _, k = leb(body, k)
                    n_imported_funcs += 1
                elif kind == 1:
                    k += 1
                    fl, k = leb(body, k)
                    _, k = leb(body, k)
                    if fl & 1:
                        _, k = leb(body, k)
                elif kind == 2:
                    fl, k = leb(body, k)
                    _, k = leb(body, k)
                    if fl & 1:
                        _, k = leb(body, k)
                elif kind == 3:
                    k += 2
                else:
                    _, k = leb(body, k)
        elif sid == 10:  # code
            k = 0
            cnt, k = leb(body, k)
            for _ in range(cnt):
                sz, k2 = leb(body, k)
                code_sizes.append(sz + (k2 - k))
                k = k2 + sz
        elif sid == 11:
            data_size += size
        elif sid == 0:
            ln, k = leb(body, 0)
            nm = body[k : k + ln].decode()
            k += ln
            if nm == "name":
                while k < len(body):
                    sub = body[k]
                    ssz, k2 = leb(body, k + 1)
                    if sub == 1:
                        kk = k2
                        cnt, kk = leb(body, kk)
                        for _ in range(cnt):
                            idx, kk = leb(body, kk)
                            ln2, kk = leb(body, kk)
                            names[idx] = body[kk : kk + ln2].decode(errors="replace")
                            kk += ln2
                    k = k2 + ssz
        i = j + size
    mangled = [names.get(n_imported_funcs + f, f"func[{f}]") for f in range(len(code_sizes))]
    try:
        out = subprocess.run(["c++filt"], input="\n".join(mangled), capture_output=True, text=True).stdout.split("\n")
        demangled = out[: len(mangled)] if len(out) >= len(mangled) else mangled
    except OSError:
        demangled = mangled
    total = len(b)
    code = sum(code_sizes)
    print(f"{path}: {total} bytes; code {code} ({100*code/total:.1f}%), data {data_size} ({100*data_size/total:.1f}%), "
          f"{len(code_sizes)} functions")
    groups = defaultdict(int)
    for name, sz in zip(demangled, code_sizes):
        n = name
        for pre in ("<", "_<", "&"):
            n = n.lstrip(pre)
        key = "::".join(n.split("::")[:depth]).split(" as ")[0].split("<")[0] or name
        groups[key] += sz
    print(f"\ncode by path prefix (depth {depth}):")
    for k, v in sorted(groups.items(), key=lambda kv: -kv[1])[:top]:
        print(f"{v:9d} {100*v/code:5.1f}%  {k}")
    print("\nlargest functions:")
    for name, sz in sorted(zip(demangled, code_sizes), key=lambda kv: -kv[1])[:top]:
        print(f"{sz:9d}  {name[:150]}")


main()
