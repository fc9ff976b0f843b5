"""Survey: run many generated graphs, record every outcome, group the problems by class.

Not a test (it asserts nothing): a tool to find which classes of graphs fail.

    python -m tests.fuzz.survey --examples 200 --backend numpy --out survey.jsonl
    python -m tests.fuzz.survey --examples 100 --parity numba --out parity.jsonl   # numba vs numpy
"""

from __future__ import annotations

import argparse
import collections
import json
import time

from hypothesis import HealthCheck, given, settings

from tests.fuzz.construct_check import check_parity, check_spec
from tests.fuzz.construct_graphs import blackbox_param_reads, build, construct_specs, estimator_configs


def features(spec) -> list[str]:
    """Coarse tags of a spec, to group failures by construct."""
    tags = set()
    for layer in spec["layers"]:
        tags.add(layer["kind"])
        tags.add(f"link:{layer['link']}")
        if layer["kind"] == "categorical":
            tags.add(f"use:{layer['use']}")
            tags.add("cat:scalar" if layer["width"] == 0 else "cat:elements")
    tags.update(f"cost:{c}" for c in spec["costs"])
    tags.update(f"blackbox:{c}" for c in spec["blackbox"])
    tags.add(f"baseline:{spec['baseline']}")
    tags.add(f"k:{spec['n_samples']}")
    if blackbox_param_reads(build(spec)[0]):
        tags.add("blackbox_reads_param")
    return sorted(tags)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--examples", type=int, default=100)
    ap.add_argument("--backend", default="numpy")
    ap.add_argument("--out", default="survey.jsonl")
    ap.add_argument("--parity", default=None, help="a compiled backend to compare with numpy (one config per graph)")
    args = ap.parse_args(argv)
    rows = []
    t0 = time.time()
    out = open(args.out, "w")  # noqa: SIM115 - written as results come, so a long run can be read midway

    def record(row):
        rows.append(row)
        out.write(json.dumps(row, default=str) + "\n")
        out.flush()

    @settings(max_examples=args.examples, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(construct_specs())
    def run(spec):
        try:
            if args.parity:
                configs = estimator_configs(spec)
                outcomes = [check_parity(spec, configs[spec["seed"] % len(configs)], backend=args.parity)]
            else:
                outcomes = check_spec(spec, backend=args.backend)
        except Exception as e:  # noqa: BLE001 - the oracle itself failed: record it
            record({"spec": spec, "estimator": "oracle", "status": "oracle failure",
                    "detail": f"{type(e).__name__}: {e}"})
            return
        for o in outcomes:
            record({"spec": spec, "estimator": o.estimator, "status": o.status, "detail": o.detail,
                    "tags": features(spec)})

    try:
        run()
    finally:
        out.close()
    counts = collections.Counter((str(r["estimator"]), r["status"]) for r in rows)
    print(f"{args.examples} graphs, {len(rows)} configurations, {time.time() - t0:.0f} s")
    for (est, status), n in sorted(counts.items()):
        print(f"  {est:50s} {status:28s} {n}")


if __name__ == "__main__":
    main()
