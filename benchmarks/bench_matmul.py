"""One bf16 vs fp32 matmul on this CPU (the shape of the 135M student's MLP: 512x576 @ 576x1536), and
what mentor.precision decides from torch's checks. A CPU that emulates bf16 shows it at once:

    .venv/bin/python benchmarks/bench_matmul.py
    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 .venv/bin/python benchmarks/bench_matmul.py   # AVX2-only, emulated
"""

import time

import torch

from mentor.precision import detect

torch.manual_seed(0)
a, b = torch.randn(512, 576), torch.randn(576, 1536)
for dtype in (torch.float32, torch.bfloat16):
    x, y = a.to(dtype), b.to(dtype)
    for _ in range(3):
        x @ y
    t0 = time.perf_counter()
    for _ in range(10):
        x @ y
    print(f"{str(dtype):16s} {(time.perf_counter() - t0) / 10 * 1000:8.1f} ms")
print(detect().describe())
