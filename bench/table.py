"""Prints bench/run.sh's results as the markdown tables of BENCHMARKS.md."""
import glob, json, os, sys

out = sys.argv[1]
rows = json.load(open(os.path.join(out, "results.json")))

def g(r, k, default=float("nan")):
    v = r.get(k)
    return default if v is None else v

kernel = []
for f in sorted(glob.glob(os.path.join(out, "kernel", "*.t1.json"))):
    t1 = json.load(open(f)); t2 = json.load(open(f.replace(".t1.", ".t2.")))
    kernel.append((os.path.basename(f)[:-8], t1["speedup"], t2["speedup"], t1["fused"].get("QLinearConv", 0)))
if kernel:
    print("Kernel limit (fully fused conv stacks, INT8 vs FP32):\n")
    print("| stack | QLinearConv | speedup 1T | speedup 2T |\n|---|---|---|---|")
    for name, s1, s2, q in kernel:
        print(f"| {name} | {q} | {s1:.2f}x | {s2:.2f}x |")
    lo = min(min(k[1], k[2]) for k in kernel); hi = max(max(k[1], k[2]) for k in kernel)
    print(f"\nKernel limit on this CPU: {lo:.2f}x - {hi:.2f}x\n")

print("| model | images | tool | cosine mean / min | speedup 1T | speedup 2T | FP32 ms 1T | INT8 ms 1T | QLinearConv / Conv left | DQ left | size FP32 -> INT8 | quantize s |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    for tool in r.get("tools", ["kenosis", "kenosis-mp", "ort"]):
        a, b = r.get(f"{tool}_t1", {}), r.get(f"{tool}_t2", {})
        if "error" in a or not a:
            print(f"| {r['model']} | {r.get('images', '')} | {tool} | failed: {a.get('error', '?')[:60]} | | | | | | | | |"); continue
        blank = max((o.get("blank_samples", 0) for o in a.get("outputs", [])), default=0)
        note = f" ({blank} blank)" if blank else ""
        label = {"kenosis-mp": f"kenosis --target-cosine {r['target_cosine']}",
                 "kenosis-mp16": f"kenosis --target-cosine {r['target_cosine']} --fp16-float-layers"}.get(tool, tool)
        f = a.get("fused", {})
        conv_left = f.get("Conv", 0) + f.get("FusedConv", 0)
        print(f"| {r['model']} | {r.get('images', '')} | {label} | {a['cosine_mean']:.4f} / {a['cosine_min']:.4f}{note} | {a['speedup']:.2f}x | {b.get('speedup', float('nan')):.2f}x "
              f"| {a['fp32_ms']:.2f} | {a['int8_ms']:.2f} | {f.get('QLinearConv', 0)} / {conv_left} | {f.get('DequantizeLinear', 0)} "
              f"| {a['fp32_bytes']/1e6:.2f} MB -> {a['int8_bytes']/1e6:.2f} MB ({a['fp32_bytes']/max(a['int8_bytes'],1):.1f}x) | {r['quantize_s'][tool]:.1f} |")
