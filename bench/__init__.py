"""usagewatch benchmarks: throughput, detection latency, event-to-alert latency and memory (issue 5).

`python -m bench` runs everything and prints a table of ratios measured in the same run; `--smoke` runs
the same code at small sizes (tests/test_bench_smoke.py). See bench/README.md.
"""
