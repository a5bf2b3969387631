"""Training speed of one small MLP in PyTorch, for comparison with tch.

The same network and loop as crates/doin-plugins/examples/mlp_speed.rs: inputs `window` ->
`depth` hidden layers of `width` ReLU units -> `horizon` outputs, Adam (lr 1e-3), L1 loss,
one fixed random batch per step, CPU, the given intra-op thread count, 100 untimed warm-up
steps. Prints one line: `pytorch steps=... seconds=... steps_per_s=...`.

Run through scripts/bench-tch-vs-pytorch.sh, or directly with the torch venv's python:
    ~/.cache/doin/torch-venv/bin/python scripts/mlp_speed.py --steps 3000 --threads 1
"""

import argparse
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", type=int, default=48)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--horizon", type=int, default=8)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=1)
    a = parser.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    layers = []
    inputs = a.window
    for _ in range(a.depth):
        layers += [torch.nn.Linear(inputs, a.width), torch.nn.ReLU()]
        inputs = a.width
    layers.append(torch.nn.Linear(inputs, a.horizon))
    model = torch.nn.Sequential(*layers)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(a.batch, a.window)
    y = torch.randn(a.batch, a.horizon)

    def step() -> None:
        loss = (model(x) - y).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(min(a.steps, 100)):
        step()
    started = time.perf_counter()
    for _ in range(a.steps):
        step()
    seconds = time.perf_counter() - started
    print(f"pytorch steps={a.steps} seconds={seconds:.3f} steps_per_s={a.steps / seconds:.1f}")


if __name__ == "__main__":
    main()
