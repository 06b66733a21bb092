"""Sampling: all series x samples of a chunk unroll together; the lag buffer stays on the device.

The unroll does less than running the network on full inputs for every sample at every step,
with the same result (pinned by tests against the network run step by step):

- Only the lags that reach into the forecast differ between the samples of a series. Covariates,
  calendar, age, the static part and every lag that still reads the history are the same for all
  samples: their share of the first layer's gates is computed once per series and step
  (``FastStep.shared``) and broadcast. The per-sample first-layer matmul shrinks from
  ``D_in x 4H`` to ``(lags <= t) x 4H``.
- Samples whose drawn paths agree so far share one state: all of them at the first step, and
  for count data often several steps more (an intermittent series' paths sit at zero together).
  Only distinct prefixes are computed; every sample still gets its own draw.
- A drawn value enters later steps as ``squash(y / scale)``, computed once and kept in a buffer
  laid out so that the lags of a step are one block of rows next to ``h_0``: with the recurrent
  term, one matmul.

A step works in place on feature-major buffers (``[features, columns]``: drawn values and
``[h_0; 1; h_1; 1; ...]`` in one, the cells, the gates): one matmul per layer (biases on the ones
rows, the shared gates as the first layer's accumulator) and a few elementwise passes over
contiguous memory. On the CPU chunks run in parallel threads, one core each, with a random
stream per chunk. ``dtype="bfloat16"`` runs the matmuls in bfloat16; opt-in, see ``sample_paths``.
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import torch

from .module import DeepARNetwork, PanelTensors, ProfileHistory, lag_inputs, squash, step_inputs
from .training import window_batch

__all__ = ["sample_paths", "FastStep", "default_max_rows"]


def default_max_rows(device) -> int:
    """Series x samples unrolled together when ``max_rows`` is None: 16,384 on the CPU (bounded
    memory; 2,048-16,384 rows time the same within the machine's +-10 % noise on walmart and the
    synthetic M5 panel, although the matmul alone runs 4x faster at 4,096 rows, whose gate buffer
    fits a core's L2), 262,144 on a GPU (fewer, bigger kernel launches: a row's state is a few
    hundred bytes; chosen from launch counts, not measured here)."""
    return 16_384 if torch.device(device).type == "cpu" else 262_144


class FastStep:
    """The recurrent step of ``net`` split by what varies between the samples of a series.

    Tensors are feature-major (``[features, rows]``), so every elementwise pass of the cell runs
    over contiguous memory and a step's matmuls are ``weights @ buffer-rows``.
    ``shared(rest, static)`` is the first layer's gate input from everything but the lags (biases
    included); ``recur(gates, h, c)`` runs the layers from first-layer gate inputs, in place on the
    state buffers; ``__call__`` is the step on full lag inputs in the network's own layout (for
    tests and callers that hold those). LSTM gates are reordered ``(i, f, o, g)`` so one sigmoid
    covers three of them. ``dtype``: the matmul operands' and ``h``'s dtype (float32 or
    bfloat16); ``c`` and the head stay float32."""

    def __init__(self, net: DeepARNetwork, dtype: torch.dtype = torch.float32):
        self.net, rnn = net, net.rnn
        self.cell = "lstm" if isinstance(rnn, torch.nn.LSTM) else "gru"
        self.layers, self.hidden, self.dtype = rnn.num_layers, rnn.hidden_size, dtype
        Hd, L = self.hidden, self.layers
        if self.cell == "lstm":
            perm = torch.cat([torch.arange(0, 2 * Hd), torch.arange(3 * Hd, 4 * Hd), torch.arange(2 * Hd, 3 * Hd)])
        else:
            perm = torch.arange(3 * Hd)
        perm = perm.to(rnn.weight_ih_l0.device)
        p = {name: w.detach()[perm] for name, w in rnn.named_parameters()}
        self.n_lag = 2 * len(net.lags)
        w0 = p["weight_ih_l0"]
        self.w_lag, self.w_rest = w0[:, :self.n_lag], w0[:, self.n_lag:]  # float32: per series, not per sample
        self.b0 = p["bias_ih_l0"] + p["bias_hh_l0"] if self.cell == "lstm" else p["bias_ih_l0"]
        # The h buffer holds [h_0; 1; h_1; 1; ...]: a layer's matmul reads [h_{k-1}; 1; h_k] (LSTM) or
        # [h_k; 1] (GRU, head) as one block of rows, its bias riding on the ones row (no bias pass)
        cat = lambda *ws: torch.cat([w if w.dim() == 2 else w[:, None] for w in ws], 1).to(dtype)
        self.w_hh0 = p["weight_hh_l0"].to(dtype)
        if self.cell == "lstm":
            self.w_up = [cat(p[f"weight_ih_l{k}"], p[f"bias_ih_l{k}"] + p[f"bias_hh_l{k}"], p[f"weight_hh_l{k}"])
                         for k in range(1, L)]
        else:
            self.w_ih = [cat(p[f"weight_ih_l{k}"], p[f"bias_ih_l{k}"]) for k in range(1, L)]
            self.w_hh = [cat(p[f"weight_hh_l{k}"], p[f"bias_hh_l{k}"]) for k in range(L)]
        self.w_head = cat(net.head.weight.detach(), net.head.bias.detach()).float()
        self._scratch = {}

    @property
    def gates(self) -> int:
        return self.w_hh0.shape[0]

    def shared(self, rest: torch.Tensor, static: torch.Tensor) -> torch.Tensor:
        """``[n, W, gates]`` first-layer gate input from covariates ``rest`` ``[n, W, D]`` and
        ``static`` ``[n, Ds]`` (input bias included; for an LSTM the recurrent bias too)."""
        x = torch.cat([rest, static[:, None, :].expand(-1, rest.shape[1], -1)], -1)
        return x @ self.w_rest.T + self.b0

    def state_buffers(self, state):
        """``nn.LSTM`` / ``nn.GRU`` state (``[layers, B, H]``) -> ``h`` ``[layers * (H + 1), B]``
        (``dtype``; each layer's rows followed by a row of ones) and ``c`` ``[layers * H, B]``
        (float32; None for a GRU)."""
        hs = state[0] if self.cell == "lstm" else state
        one = torch.ones(1, hs.shape[1], device=hs.device)
        h = torch.cat([part for x in hs for part in (x.T, one)], 0).to(self.dtype)
        c = torch.cat([x.T for x in state[1]], 0).contiguous() if self.cell == "lstm" else None
        return h, c

    def _buffer(self, rows: int, dtype: torch.dtype, slot: int = 0) -> torch.Tensor:
        """Scratch gates ``[gates, rows]`` of ``dtype`` (grown, never shrunk)."""
        buf = self._scratch.get((dtype, slot))
        if buf is None or buf.numel() < self.gates * rows:
            buf = self._scratch[dtype, slot] = torch.empty(self.gates * rows, dtype=dtype, device=self.w_hh0.device)
        return buf[:self.gates * rows].view(self.gates, rows)

    def recur(self, gates: torch.Tensor, h: torch.Tensor, c: torch.Tensor | None,
              recurrent_added: bool = False) -> torch.Tensor:
        """One step of every layer, in place. ``gates`` ``[gates, B]``: the first layer's input
        gates (overwritten; ``recurrent_added``: an LSTM's ``W_hh h_0`` is already in them); ``h``
        and ``c`` as from ``state_buffers``, updated. Returns the head's raw output ``[P, B]``."""
        Hd, D, B = self.hidden, self.hidden + 1, h.shape[1]
        low = self.dtype != torch.float32  # activations run in float32: one conversion pass is cheaper
        g = gates
        for k in range(self.layers):
            hk = h[k * D:k * D + Hd]
            if self.cell == "lstm":
                if k == 0 and not recurrent_added:
                    g.addmm_(self.w_hh0, hk)  # the input gates are the accumulator: no separate add
                elif k > 0:
                    g = torch.mm(self.w_up[k - 1], h[(k - 1) * D:k * D + Hd], out=self._buffer(B, self.dtype))
                if low:
                    g = self._buffer(B, torch.float32).copy_(g)
                g[:3 * Hd].sigmoid_()
                g[3 * Hd:].tanh_()
                ck = c[k * Hd:(k + 1) * Hd]
                ck.mul_(g[Hd:2 * Hd]).addcmul_(g[:Hd], g[3 * Hd:])
                torch.tanh(ck, out=g[3 * Hd:])
                torch.mul(g[2 * Hd:3 * Hd], g[3 * Hd:], out=hk)
            else:
                if k > 0:
                    g = torch.mm(self.w_ih[k - 1], h[(k - 1) * D:k * D], out=self._buffer(B, self.dtype))
                hh = torch.mm(self.w_hh[k], h[k * D:(k + 1) * D], out=self._buffer(B, self.dtype, 1))
                if low:
                    g, hh = self._buffer(B, torch.float32).copy_(g), self._buffer(B, torch.float32, 1).copy_(hh)
                rz = g[:2 * Hd].add_(hh[:2 * Hd]).sigmoid_()
                cand = g[2 * Hd:].addcmul_(rz[:Hd], hh[2 * Hd:]).tanh_()
                hk.sub_(cand).mul_(rz[Hd:]).add_(cand)  # h = (1 - z) cand + z h
        return self.w_head @ h[(self.layers - 1) * D:].float()  # [P, B]

    def __call__(self, lag_in: torch.Tensor, shared: torch.Tensor, state, S: int):
        """``lag_in`` ``[n*S, 2L]``, ``shared`` ``[n, gates]``, ``state`` as ``nn.LSTM`` / ``nn.GRU``
        hold it (``[layers, n*S, H]``) -> raw params ``[n*S, P]``, new state (same layout)."""
        n = shared.shape[0]
        gates = ((lag_in @ self.w_lag.T).view(n, S, -1) + shared[:, None, :]).view(n * S, -1)
        h, c = self.state_buffers(state)
        raw = self.recur(gates.T.contiguous().to(self.dtype), h, c)
        hs = torch.stack([x[:self.hidden].T for x in h.float().split(self.hidden + 1, 0)])
        return raw.T, ((hs, torch.stack([x.T for x in c.split(self.hidden, 0)])) if self.cell == "lstm" else hs)

    def step_weights(self, lags: torch.Tensor, t: int, rows: int):
        """How step ``t`` reads the drawn values: ``(first row, weights [gates, K], merged)``, or
        ``(None, None, False)`` when no lag reaches a draw yet.

        The buffer holds ``squash(y_tau / scale)`` of the draw at time ``tau`` on row ``rows - 2 -
        tau``, a zero row, then ``h_0``: lag ``j`` of step ``t`` is row ``rows - 2 - t + j``, so the
        lags of a step are one block of rows ending next to ``h_0``. For an LSTM the block runs on
        into ``h_0`` (``merged``: lag values and the first layer's recurrent term in one matmul)
        unless that would span many rows of lags the network does not read. Lags that read the
        history (``> t``) are in the shared gates and get zero weight here."""
        top = max((int(l) for l in lags.tolist() if l <= t), default=0)  # farthest lag on a draw
        merged = self.cell == "lstm" and t + 1 - top <= 16
        K = t + 1 + self.hidden if merged else top
        if K == 0:
            return None, None, False
        w = torch.zeros(self.gates, K, device=self.w_lag.device)
        for k, lag in enumerate(lags.tolist()):
            if lag <= top:
                w[:, lag - 1] = self.w_lag[:, k]
        if merged:
            w[:, t + 1:] = self.w_hh0
        return rows - 1 - t, w.to(self.dtype), merged


@torch.no_grad()
def sample_paths(net: DeepARNetwork, pt: PanelTensors, context: int, horizon: int, num_samples: int,
                 max_rows: int | None = None, dtype: torch.dtype | str | None = None,
                 workers: int | None = None, floor: torch.Tensor | None = None) -> torch.Tensor:
    """``[N, num_samples, horizon]`` paths after each series' end.

    ``floor`` (``[N]`` bool): the series whose draws are floored at zero as they are drawn, so
    later steps read the floored value.

    The context is unrolled once per series (teacher-forced on the observed history); then the
    samples of a series share one state for as long as their drawn paths agree (the first step
    always, an intermittent series' zeros often for several steps), so only distinct prefixes are
    computed; the draws are those of one state per sample. Series are processed in chunks of
    ``max_rows // num_samples`` (None: ``default_max_rows`` of the device) so that memory stays
    bounded on any device and the step's buffers stay in cache.

    On the CPU, chunks run in ``workers`` threads (None: ``torch.get_num_threads()``), each on
    one core (torch's intra-op threads are set to 1 meanwhile and restored): whole chunks in
    parallel need no synchronisation inside a step, where per-operation threads wait at every
    elementwise pass (and stall whenever another process holds a core). Each chunk draws from
    its own random stream, seeded from torch's global generator, so a seed gives the same samples
    whatever the number of workers (they do depend on ``max_rows``). On a GPU chunks run in turn
    on the global generator.

    ``dtype``: ``None`` / ``"float32"`` (default), or ``"bfloat16"`` for bfloat16 matmuls (AMX on
    recent Xeons, tensor cores on GPUs); the cell state, the activations, the head and the draws
    stay float32."""
    dtype = _dtype(dtype)
    net.eval()
    N, dev = pt.y.shape[0], pt.y.device
    S, H = num_samples, horizon
    lags = net.lags
    proto = FastStep(net, dtype)
    G = proto.gates
    Z = H + 1  # rows of drawn values in the buffer (see FastStep.step_weights)
    weights = [None] + [proto.step_weights(lags, t, Z) for t in range(1, H)]
    out = torch.empty(N, S, H, device=dev)
    chunk = max(1, (max_rows or default_max_rows(dev)) // S)
    steps = torch.arange(H, device=dev)
    lik, anchor = net.likelihood, net.anchor
    # per step t: lag l reads the history where l > t, a drawn value where l <= t
    drawn = lags[None, :] <= steps[:, None]  # [H, L]
    starts = range(0, N, chunk)
    cpu = dev.type == "cpu"
    rng = _ChunkRandom(len(starts)) if cpu else None

    @torch.no_grad()  # grad mode is per thread: the workers need it too
    def run(k: int, i: int) -> None:
        step = FastStep(net, dtype)  # its scratch buffers are this chunk's own
        draw = (lambda *a: rng.draw(k, *a)) if cpu else _draw
        rows = torch.arange(i, min(N, i + chunk), device=dev)
        n, R = rows.numel(), rows.numel() * S
        end = pt.end[rows]
        dyn, static, _, _, s, _ = window_batch(net, pt, rows, end, context, context, pt.end)
        _, state = net(dyn, static)
        # history lags of every forecast step [n, H, L]; the drawn ones enter as value 0 / flag 1,
        # so the shared gates hold their flags and only their values remain per sample
        pos = end[:, None, None] + steps[None, :, None] - lags[None, None, :]
        pc = pos.clamp(0, pt.y.shape[1] - 1)
        hv = torch.where(drawn, 0.0, pt.y[rows[:, None, None], pc])
        ho = drawn | (pt.obs[rows[:, None, None], pc] & (pos >= 0))
        fut = step_inputs(pt, rows, end[:, None] + steps, end)  # [n, H, D]
        shared = step.shared(fut, static) + lag_inputs(hv, ho, s[:, None, None]) @ step.w_lag.T
        shared = shared.permute(1, 2, 0).to(dtype, memory_format=torch.contiguous_format)  # [H, gates, n]
        base_hist = _anchor_history(pt, rows, end, steps, anchor, lags)
        s_rows = s.repeat_interleave(S)
        floor_rows = None if floor is None else floor[rows].repeat_interleave(S)
        vals = out[i:i + n].view(R, H)  # drawn values go straight into the output

        # The state has one column per distinct drawn prefix, not per sample: all samples of a
        # series share the first step, and count draws repeat (an intermittent series' paths sit
        # at zero together for a while). Each row (sample) points at its column; once most rows
        # have a prefix of their own, the columns become the rows and stay so.
        h, c = step.state_buffers(state)
        cols = torch.zeros(Z + h.shape[0], n, dtype=dtype, device=dev)  # [drawn values; h] per column
        cols[Z:] = h
        col_series = torch.arange(n, device=dev)
        row_col = col_series.repeat_interleave(S)
        gate_buf = torch.empty(G * R, dtype=dtype, device=dev)
        per_row, merged, v = False, False, None
        for t in range(H):  # autoregressive: step t reads the draws of the steps before it
            if t > 0:
                parent, new_v = None, v
                if not per_row:
                    parent, new_v, row_col = _prefixes(row_col, v, R)
                    per_row = row_col is None
                if parent is not None:  # index_select: a column gather, far cheaper than cols[:, parent]
                    cols, col_series = cols.index_select(1, parent), col_series[parent]
                    c = c.index_select(1, parent) if c is not None else None
                cols[Z - 1 - t] = squash(new_v / (s_rows if per_row else s[col_series]))
            B = cols.shape[1]
            gates = gate_buf[:G * B].view(G, B)
            if per_row:
                gates.view(G, n, S).copy_(shared[t, :, :, None])
            else:
                torch.index_select(shared[t], 1, col_series, out=gates)
            if t > 0:
                first, w, merged = weights[t]
                if w is not None:
                    gates.addmm_(w, cols[first:first + w.shape[1]])
            raw = step.recur(gates, cols[Z:], c, recurrent_added=merged)
            v = draw(lik, (raw if per_row else raw.index_select(1, row_col)).T, s_rows,
                      _base(base_hist, vals, t, anchor, S))
            if floor_rows is not None:
                v = torch.where(floor_rows, v.clamp_min(0), v)
            vals[:, t] = v

    workers = max(1, min(len(starts), workers or torch.get_num_threads())) if cpu else 1
    if workers == 1:
        for k, i in enumerate(starts):
            run(k, i)
    else:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with ThreadPoolExecutor(workers) as pool:
                list(pool.map(run, range(len(starts)), starts))  # list(): re-raise a worker's error
        finally:
            torch.set_num_threads(threads)
    return out


class _ChunkRandom:
    """One random stream per chunk on the CPU: torch's samplers draw from the global generator,
    so a chunk's draw swaps its own generator state in under a lock (the draws are short; the
    rest of a step runs in parallel)."""

    def __init__(self, chunks: int):
        base = int(torch.randint(0, 2**62, (1,)))  # from the global generator: manual_seed decides
        self.states = [torch.Generator().manual_seed(base + k).get_state() for k in range(chunks)]
        self.lock = threading.Lock()

    def draw(self, k: int, *args) -> torch.Tensor:
        with self.lock:
            saved = torch.get_rng_state()
            torch.set_rng_state(self.states[k])
            try:
                v = _draw(*args)
                self.states[k] = torch.get_rng_state()
            finally:
                torch.set_rng_state(saved)
        return v


def _prefixes(row_col: torch.Tensor, v: torch.Tensor, R: int, most: float = 0.75, quantum: int = 256):
    """The distinct drawn prefixes after a step: each row's previous column ``row_col`` ``[R]``
    and new draw ``v`` ``[R]`` -> ``(parent column of each new column, its draw, new column of each
    row)``; or ``(row_col, v, None)`` when more than ``most`` of the rows are distinct (then the
    columns become the rows: sharing no longer pays for its bookkeeping). The number of columns is
    rounded up to a multiple of ``quantum`` (copies of column 0, never read): oneDNN's bfloat16
    matmul builds and caches a kernel per shape, which costs time and memory at every new width."""
    bits = v.contiguous().view(torch.int32).to(torch.int64) & 0xFFFFFFFF  # exact equality, any value
    keys, inverse = torch.unique(row_col * 2**32 + bits, return_inverse=True)
    u = keys.numel()
    if u > most * R:
        return row_col, v, None
    first = torch.zeros(min(R, -(-u // quantum) * quantum), dtype=torch.long, device=v.device)
    first[:u].scatter_(0, inverse, torch.arange(R, device=v.device))
    return row_col[first], v[first], inverse


def _dtype(dtype) -> torch.dtype:
    if dtype is None:
        return torch.float32
    name = str(dtype).replace("torch.", "")
    if name not in ("float32", "bfloat16"):
        raise ValueError(f"dtype must be None, 'float32' or 'bfloat16', got {dtype!r}")
    return getattr(torch, name)


def _draw(lik, raw: torch.Tensor, scale: torch.Tensor, base: torch.Tensor | None) -> torch.Tensor:
    """One draw per row ``[B]`` from the likelihood's distribution at raw parameters ``[B, P]``."""
    return lik.distribution(raw, scale, base).sample()


def _anchor_history(pt: PanelTensors, rows, end, steps, anchor, lags):
    """For an anchored network: per series and step, the anchor lag's history value and flag and
    the last observed value before the forecast (``[n, H]``, ``[n, H]``, ``[n]``); for
    ``anchor="profile"`` a ``module.ProfileHistory``."""
    if anchor is None:
        return None
    if anchor == "profile":
        return ProfileHistory.build(pt, rows, end, steps.numel(), lags)
    T = pt.y.shape[1]
    pos = end[:, None] + steps - anchor
    pc = pos.clamp(0, T - 1)
    av = pt.y[rows[:, None], pc]
    ao = pt.obs[rows[:, None], pc] & (pos >= 0)
    lp = (end - 1).clamp(0, T - 1)
    lo = pt.obs[rows, lp] & (end >= 1)
    last = torch.where(lo, pt.y[rows, lp], torch.zeros_like(av[:, 0]))
    return av, ao, last


def _base(hist, vals: torch.Tensor, t: int, anchor: int | None, S: int) -> torch.Tensor | None:
    """The anchor value of step ``t`` for every row (see ``module.anchor_base``): the anchor lag's
    value (drawn once ``t >= anchor``, else from the history where observed), else the lag-1 value."""
    if anchor is None:
        return None
    if anchor == "profile":
        return hist.base(vals, t, S)
    if t >= anchor:
        return vals[:, t - anchor]
    av, ao, last = hist
    n = av.shape[0]
    prev = vals[:, t - 1].view(n, S) if t >= 1 else last[:, None].expand(n, S)
    return torch.where(ao[:, t, None], av[:, t, None], prev).reshape(-1)
