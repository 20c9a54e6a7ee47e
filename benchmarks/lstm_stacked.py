"""Can verification train an LSTM's candidates together? Three ways to run five candidate LSTMs
(each its own weights, each its own inputs) forward and backward, on one CPU thread or a GPU:

- one after the other: torch's fused LSTM once per candidate (what verification does now);
- stacked loop: the candidates' weights stacked, one batched matrix product per time step
  (``torch.baddbmm``), the gates written out; what a vmap batching rule for the LSTM would do;
- block-diagonal: one LSTM of five times the width whose weight matrices are block-diagonal
  (one block per candidate), through torch's fused kernel; the off-diagonal zeros cost
  arithmetic, not accuracy (its outputs equal the first way's).

    .venv/bin/python benchmarks/lstm_stacked.py [--hidden 32] [--repeats 30] [--device cuda]

The shapes default to `lstm-sequence`'s (batches of 64 sequences of 20 symbols embedded in 16
dimensions, hidden size 32). Prints the medians of interleaved repetitions.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

K = 5  # candidates


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--length", type=int, default=20)
    ap.add_argument("--inputs", type=int, default=16)
    ap.add_argument("--hidden", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--device", default="cpu", help="cpu (one thread), or a GPU such as cuda")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    b, t, i, h = args.batch, args.length, args.inputs, args.hidden
    lstms = [torch.nn.LSTM(i, h, batch_first=True).to(device) for _ in range(K)]

    def stacked(name: str) -> torch.Tensor:
        return torch.stack([getattr(m, name).detach() for m in lstms]).requires_grad_()

    names = ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")
    w_ih, w_hh, b_ih, b_hh = (stacked(n) for n in names)
    x = torch.randn(K, b, t, i, device=device)  # each candidate's own inputs (after its own embedding)
    zeros = torch.zeros(1, b, h, device=device)

    def one_after_the_other() -> torch.Tensor:
        out = []
        for k in range(K):
            weights = [w_ih[k], w_hh[k], b_ih[k], b_hh[k]]
            _, last, _ = torch._VF.lstm(x[k], (zeros, zeros), weights, True, 1, 0.0, True, False, True)
            out.append(last[0])
        return torch.stack(out)

    def stacked_loop() -> torch.Tensor:
        projected = torch.baddbmm((b_ih + b_hh).unsqueeze(1), x.reshape(K, b * t, i), w_ih.transpose(1, 2))
        projected = projected.view(K, b, t, 4 * h)
        state, cell = x.new_zeros(K, b, h), x.new_zeros(K, b, h)
        recurrent = w_hh.transpose(1, 2)
        for step in range(t):
            gates = torch.baddbmm(projected[:, :, step], state, recurrent)
            i_gate, f_gate, g_gate, o_gate = gates.chunk(4, -1)
            cell = torch.sigmoid(f_gate) * cell + torch.sigmoid(i_gate) * torch.tanh(g_gate)
            state = torch.sigmoid(o_gate) * torch.tanh(cell)
        return state

    def block_diagonal() -> torch.Tensor:
        eye = torch.eye(K, device=device)
        # gate-major rows (input, forget, cell, output gates of all candidates), candidate-major columns
        wide_ih = torch.einsum("kghi,kl->gkhli", w_ih.view(K, 4, h, i), eye).reshape(4 * K * h, K * i)
        wide_hh = torch.einsum("kghj,kl->gkhlj", w_hh.view(K, 4, h, h), eye).reshape(4 * K * h, K * h)
        bias_ih = b_ih.view(K, 4, h).transpose(0, 1).reshape(-1)
        bias_hh = b_hh.view(K, 4, h).transpose(0, 1).reshape(-1)
        wide_x = x.permute(1, 2, 0, 3).reshape(b, t, K * i)
        start = (x.new_zeros(1, b, K * h), x.new_zeros(1, b, K * h))
        weights = [wide_ih, wide_hh, bias_ih, bias_hh]
        _, last, _ = torch._VF.lstm(wide_x, start, weights, True, 1, 0.0, True, False, True)
        return last[0].view(b, K, h).transpose(0, 1)

    ways: dict[str, Callable[[], torch.Tensor]] = {
        "one after the other (torch's LSTM per candidate)": one_after_the_other,
        "stacked loop (batched matmul per time step)": stacked_loop,
        "block-diagonal (one wide torch LSTM)": block_diagonal,
    }
    reference = one_after_the_other().detach()
    times: dict[str, list[float]] = {name: [] for name in ways}
    for rep in range(args.repeats + 3):
        for name, way in ways.items() if rep % 2 == 0 else reversed(ways.items()):
            sync()
            start = time.perf_counter()
            way().square().sum().backward()
            sync()
            if rep >= 3:  # the first repetitions warm up
                times[name].append(time.perf_counter() - start)
    base = statistics.median(times[next(iter(ways))])
    where = "one CPU thread" if device.type == "cpu" else f"{device.type} ({_name(device)})"
    flag = "" if device.type == "cpu" else f" --device {args.device}"
    print(
        f"`.venv/bin/python benchmarks/lstm_stacked.py --hidden {h}{flag}`: {K} candidates, batch {b}, "
        f"length {t}, inputs {i}, hidden {h}; {where}, medians of {args.repeats}\n"
    )
    print("| way | forward + backward (ms) | x one after the other | largest difference of the outputs |")
    print("|---|---:|---:|---:|")
    for name, way in ways.items():
        median = statistics.median(times[name])
        diff = float((way().detach() - reference).abs().max())
        print(f"| {name} | {1e3 * median:.2f} | {median / base:.2f} | {diff:.1e} |")


def _name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else str(device)


if __name__ == "__main__":
    main()
