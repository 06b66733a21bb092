"""Sampling: all series x samples of a chunk unroll together; the lag buffer stays on the device."""
from __future__ import annotations

import torch

from .module import DeepARNetwork, PanelTensors, ProfileHistory, anchor_base, lag_inputs, step_inputs
from .training import window_batch

__all__ = ["sample_paths", "FastStep"]


class FastStep:
    """One recurrent step for many samples of the same series, with the work split by what varies.

    Only the lag inputs differ between the samples of a series; covariates, calendar, age and the
    static part are shared. Their share of the first layer's gates is computed once per series and
    step (``shared``) and broadcast over samples, so the per-sample matmul of the first layer
    shrinks from ``D_in x 4H`` to ``2L x 4H``. Mathematically identical to ``net`` (pinned by a test)."""

    def __init__(self, net: DeepARNetwork):
        self.net, rnn = net, net.rnn
        self.cell = "lstm" if isinstance(rnn, torch.nn.LSTM) else "gru"
        self.layers = rnn.num_layers
        n_lag = 2 * len(net.lags)
        w = rnn.weight_ih_l0
        self.w_lag, self.w_rest = w[:, :n_lag], w[:, n_lag:]
        self.w_ih = [getattr(rnn, f"weight_ih_l{k}") for k in range(self.layers)]
        self.w_hh = [getattr(rnn, f"weight_hh_l{k}") for k in range(self.layers)]
        self.b_ih = [getattr(rnn, f"bias_ih_l{k}") for k in range(self.layers)]
        self.b_hh = [getattr(rnn, f"bias_hh_l{k}") for k in range(self.layers)]

    def shared(self, rest: torch.Tensor, static: torch.Tensor) -> torch.Tensor:
        """``[n, H, 4H_gates]`` first-layer gate input from covariates ``rest`` ``[n, H, D]`` and
        ``static`` ``[n, Ds]`` (input bias included; for an LSTM the recurrent bias too)."""
        x = torch.cat([rest, static[:, None, :].expand(-1, rest.shape[1], -1)], -1)
        g = x @ self.w_rest.T + self.b_ih[0]
        return g + self.b_hh[0] if self.cell == "lstm" else g

    def __call__(self, lag_in: torch.Tensor, shared: torch.Tensor, state, S: int):
        """``lag_in`` ``[n*S, 2L]``, ``shared`` ``[n, gates]`` -> raw params ``[n*S, P]``, new state."""
        n = shared.shape[0]
        x_gates = (lag_in @ self.w_lag.T).view(n, S, -1) + shared[:, None, :]
        x_gates = x_gates.view(n * S, -1)
        if self.cell == "lstm":
            hs, cs = state
            new_h, new_c = [], []
            for k in range(self.layers):  # a few layers
                gates = torch.addmm(x_gates, hs[k], self.w_hh[k].T)  # the add rides in the matmul
                i, f, g, o = gates.chunk(4, -1)
                c = torch.sigmoid(f) * cs[k] + torch.sigmoid(i) * torch.tanh(g)
                h = torch.sigmoid(o) * torch.tanh(c)
                new_h.append(h)
                new_c.append(c)
                if k + 1 < self.layers:
                    x_gates = torch.addmm(self.b_ih[k + 1] + self.b_hh[k + 1], h, self.w_ih[k + 1].T)
            state = (torch.stack(new_h), torch.stack(new_c))
        else:
            hs = state
            new_h = []
            for k in range(self.layers):
                hh = hs[k] @ self.w_hh[k].T + self.b_hh[k]
                xr, xz, xn = x_gates.chunk(3, -1)
                hr, hz, hn = hh.chunk(3, -1)
                r = torch.sigmoid(xr + hr)
                z = torch.sigmoid(xz + hz)
                cand = torch.tanh(xn + r * hn)
                h = (1 - z) * cand + z * hs[k]
                new_h.append(h)
                if k + 1 < self.layers:
                    x_gates = h @ self.w_ih[k + 1].T + self.b_ih[k + 1]
            state = torch.stack(new_h)
        return self.net.head(state[0][-1] if self.cell == "lstm" else state[-1]), state


@torch.no_grad()
def sample_paths(net: DeepARNetwork, pt: PanelTensors, context: int, horizon: int, num_samples: int,
                 max_rows: int = 16_384) -> torch.Tensor:
    """``[N, num_samples, horizon]`` paths after each series' end.

    The context is unrolled once per series (teacher-forced on the observed history); its state is
    then repeated for the samples. Series are processed in chunks of ``max_rows // num_samples``
    so that memory stays bounded on any device; on this CPU 16k rows (gates stay in cache) ran
    1.5x faster than 200k (walmart, 400 series x 250 paths: 16.4 s vs 25.0 s, one thread)."""
    net.eval()
    N, dev = pt.y.shape[0], pt.y.device
    S, H = num_samples, horizon
    lags = net.lags
    maxlag = int(lags.max())
    out = torch.empty(N, S, H, device=dev)
    chunk = max(1, max_rows // S)
    hist_pos = torch.arange(-maxlag, 0, device=dev)
    step = FastStep(net)
    for i in range(0, N, chunk):  # memory-bounded chunks of series, not a loop per series
        rows = torch.arange(i, min(N, i + chunk), device=dev)
        n = rows.numel()
        end = pt.end[rows]
        dyn, static, _, _, s, _ = window_batch(net, pt, rows, end, context, context, pt.end)
        _, state = net(dyn, static)
        state = tuple(h.repeat_interleave(S, 1) for h in state) if isinstance(state, tuple) \
            else state.repeat_interleave(S, 1)
        pos = end[:, None] + hist_pos
        pc = pos.clamp(0, pt.y.shape[1] - 1)
        hv = pt.y[rows[:, None], pc]
        ho = pt.obs[rows[:, None], pc] & (pos >= 0)
        buf = torch.cat([hv, torch.zeros(n, H, device=dev)], 1).repeat_interleave(S, 0)
        bobs = torch.cat([ho, torch.ones(n, H, dtype=torch.bool, device=dev)], 1).repeat_interleave(S, 0)
        fut = step_inputs(pt, rows, end[:, None] + torch.arange(H, device=dev))  # [n, H, D]
        shared = step.shared(fut, static)  # [n, H, gates]: everything the samples of a series share
        s_m = s.repeat_interleave(S, 0)
        prof = ProfileHistory.build(pt, rows, end, H, lags) if net.anchor == "profile" else None
        for h in range(H):  # autoregressive: step h reads the samples of the steps before it
            idx = maxlag + h - lags
            lv, lo = buf[:, idx], bobs[:, idx]
            raw, state = step(lag_inputs(lv, lo, s_m[:, None]), shared[:, h], state, S)
            base = prof.base(buf[:, maxlag:], h, S) if prof is not None else anchor_base(lv, lo, lags, net.anchor)
            buf[:, maxlag + h] = net.likelihood.distribution(raw, s_m, base).sample()
        out[i:i + n] = buf[:, maxlag:].view(n, S, H)
    return out
