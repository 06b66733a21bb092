"""DeepAR sampling throughput against the bound: a bare ``torch.nn.LSTM`` unroll of the same size and batch.

    python benchmarks/deepar_sampling_bound.py --data-dir ../shared/data --series 400 --samples 250 --threads 1

Both unroll ``series x samples`` rows for the walmart horizon (39 steps): ours through
``sample_paths`` (shared gate inputs per series, the first step once per series, drawn lags read
as one block of buffer rows, likelihood sampling), the bound as 39 single-step calls of an
``nn.LSTM`` with our network's input width, hidden size and layers. A fraction above 1 means ours
is faster than the bare unroll (it does less work: see ``sampling.py``). ``--dtype bfloat16``
times the opt-in bfloat16 matmuls. ``--peer`` also times, in the same process, the GluonTS DeepAR
peer's predictor (fev-bench's settings: 2 x 40 LSTM, 250 paths drawn together) and ours, both end
to end through ``predict`` on the same series and number of paths. Writes
``benchmarks/results/deepar_sampling_bound.json`` (``..._peer.json`` with ``--peer``).
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

import forecasting
from forecasting.evaluation.backtest import environment
from forecasting.forecast import atomic_write
from forecasting.models.deepar import DeepAR
from forecasting.models.deepar.sampling import default_max_rows, sample_paths


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=os.environ.get("FORECASTING_DATA"))
    ap.add_argument("--series", type=int, default=400)
    ap.add_argument("--samples", type=int, default=250)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--max-rows", type=int, default=None,
                    help="series x samples per chunk, ours and the bare LSTM's (None: DeepAR's default)")
    ap.add_argument("--peer", action="store_true", help="also time the GluonTS peer's predictor and ours end to end")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    ds = forecasting.load("walmart", args.data_dir)
    window = ds.windows()[0]
    panel = window.train.select(range(args.series))
    H = ds.task.horizon
    model = DeepAR(max_epochs=1, batches_per_epoch=5, validation=False, device="cpu",
                   **({"max_rows": args.max_rows} if args.max_rows else {})).fit(panel, H)
    pt = model._tensors(panel, H)
    net = model.net_
    rows = args.series * args.samples

    def best(fn):
        fn()  # warm-up
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return min(times)

    ours = best(lambda: sample_paths(net, pt, model.context_, H, args.samples, model.max_rows, dtype=args.dtype))
    width = net.num_dynamic + net.num_static
    lstm = torch.nn.LSTM(width, model.hidden_size, model.num_layers, batch_first=True).eval()
    x = torch.randn(model.max_rows or default_max_rows("cpu"), 1, width)

    @torch.no_grad()
    def bare():
        for i in range(0, rows, x.shape[0]):  # same chunking as ours: cache-sized blocks of rows
            xi = x[: min(x.shape[0], rows - i)]
            state = None
            for _ in range(H):
                _, state = lstm(xi, state)

    bound = best(bare)
    peer_part = {}
    if args.peer:  # both fitted for a few steps only: prediction cost does not depend on the weights
        from forecasting.models.gluonts_deepar import GluonTSDeepAR
        peer = GluonTSDeepAR.fev(H, max_epochs=1, num_batches_per_epoch=5, validation=False).fit(panel, H)
        ours_e2e = best(lambda: model.predict(panel, args.samples, seed=0))
        peer_e2e = best(lambda: peer.predict(panel, args.samples, seed=0))
        peer_part = {"ours_predict_seconds": round(ours_e2e, 3), "peer_predict_seconds": round(peer_e2e, 3),
                     "ours_predict_throughput": round(rows * H / ours_e2e),
                     "peer_predict_throughput": round(rows * H / peer_e2e),
                     "throughput_ratio_vs_peer": round(peer_e2e / ours_e2e, 3),
                     "peer": "GluonTSDeepAR.fev(h): 2 x 40 LSTM, Student-t, lags 1-8, 12, 51-53, 103-105, 155-157, "
                             "250 paths drawn together (num_parallel_samples)"}
    result = {
        "rows": rows, "series": args.series, "samples": args.samples, "horizon": H, "dtype": args.dtype,
        "hidden_size": model.hidden_size, "num_layers": model.num_layers, "input_width": width,
        "ours_seconds": round(ours, 3), "bare_lstm_seconds": round(bound, 3),
        "ours_throughput": round(rows * H / ours), "bare_lstm_throughput": round(rows * H / bound),
        "fraction_of_bound": round(bound / ours, 3), **peer_part,
        "threads": torch.get_num_threads(), "load_average": [round(x, 2) for x in os.getloadavg()],
        "environment": environment(),
    }
    out = Path(__file__).parent / "results" / ("deepar_sampling_bound_peer.json" if args.peer else "deepar_sampling_bound.json")
    atomic_write(out, lambda tmp: Path(tmp).write_text(json.dumps(result, indent=1)))
    print(json.dumps({k: v for k, v in result.items() if k != "environment"}, indent=1))


if __name__ == "__main__":
    main()
