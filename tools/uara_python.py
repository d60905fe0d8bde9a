#!/usr/bin/python3
"""The UaRA-net run from Python (Debian python3-torch) on the project's own weights, for `make bench`.

The C++ archive written by torch::save (network/models/<name>.pt) is read with torch.jit.load, its
parameters and buffers copied by name into the same architecture written here in torch.nn
(network/model.cpp is the reference; names match), and the ensemble combined as network/model_io.cpp
does, with the sidecar's per-band sigma calibration.

Usage: tools/uara_python.py MODEL INPUT.npy CPP_OUTPUT.npy THREADS
  INPUT.npy: n x 2 x 2238 float32 (flux, err); CPP_OUTPUT.npy: n x 2 x 574 (mu, sigma) from csst-bench.
Prints spectra/s for batch 1, 64 and 2048 and the largest relative difference to the C++ outputs.
"""
import json
import math
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

N_IN, N_OUT = 2238, 574


def conv(cin, cout, stride):
    return nn.Conv1d(cin, cout, 3, stride=stride, padding=1)


class SubUnit(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.cin, self.cout, self.stride = cin, cout, stride
        self.bn1, self.c1 = nn.BatchNorm1d(cin), conv(cin, cout, stride)
        self.bn2, self.c2 = nn.BatchNorm1d(cout), conv(cout, cout, 1)
        self.bn3, self.c3 = nn.BatchNorm1d(cout), conv(cout, cout, 1)
        self.bn4, self.c4 = nn.BatchNorm1d(cout), conv(cout, cout, 1)
        self.a1, self.a2, self.a3 = conv(cout, cout, 1), conv(cout, cout, 1), conv(cout, cout, 1)

    def forward(self, x):
        m = self.c1(F.relu(self.bn1(x)))
        m = self.c2(F.relu(self.bn2(m)))
        m = self.c3(F.relu(self.bn3(m)))
        m = self.c4(F.relu(self.bn4(m)))
        absm = m.abs()
        tau = torch.sigmoid(self.a3(F.relu(self.a2(F.relu(self.a1(absm)))))) * absm
        shrunk = torch.sign(m) * torch.clamp_min(absm - tau, 0.0)
        sc = x[:, :, :: self.stride] if self.stride > 1 else x
        sc = sc[:, :, : shrunk.shape[2]]
        if self.cout > self.cin:
            sc = torch.cat([sc, sc.new_zeros(sc.shape[0], self.cout - self.cin, sc.shape[2])], 1)
        return shrunk + sc


class UaraNet(nn.Module):
    # pca > 0: fc4 gives pca coefficients of the log SED and mu = exp(pca_mean + c pca_basis) (the sidecar's
    # output_basis; network/model.h)
    def __init__(self, pca=0):
        super().__init__()
        self.pca = pca
        self.stem = conv(1, 4, 2)
        for i, (a, b, s) in enumerate([(4, 4, 2), (4, 4, 1), (4, 8, 2), (8, 8, 1), (8, 16, 2), (16, 16, 1)]):
            setattr(self, "unit%d" % i, SubUnit(a, b, s))
        self.bn_out = nn.BatchNorm1d(16)
        self.fc1, self.fc2, self.fc3, self.fc4 = nn.Linear(16, 100), nn.Linear(100, 200), nn.Linear(200, 300), nn.Linear(300, pca or N_OUT)
        if pca:
            self.register_buffer("pca_mean", torch.zeros(N_OUT))
            self.register_buffer("pca_basis", torch.zeros(pca, N_OUT))
        self.u1, self.u2, self.u3 = nn.Linear(N_IN, 16), nn.Linear(32, 64), nn.Linear(64, N_OUT)

    def forward(self, flux, err):
        h = self.stem(flux.unsqueeze(1))
        for i in range(6):
            h = getattr(self, "unit%d" % i)(h)
        z = F.relu(self.bn_out(h)).mean(2)
        s = F.relu(self.fc3(F.relu(self.fc2(F.relu(self.fc1(z))))))
        mu = torch.exp(self.pca_mean + self.fc4(s) @ self.pca_basis) if self.pca else self.fc4(s)
        u = torch.cat([F.relu(self.u1(err)), z], 1)
        sigma = F.softplus(self.u3(F.relu(self.u2(u)))) + 1e-4
        return mu, sigma


def load(model):
    side = json.load(open(model + ".json"))
    k = side.get("ensemble", 1)
    basis = side.get("output_basis", "pixels")
    pca = basis["components"] if isinstance(basis, dict) else 0
    members = nn.ModuleDict({"member%d" % i: UaraNet(pca) for i in range(k)})
    archive = torch.jit.load(model + ".pt")
    state = {n: t for n, t in archive.named_parameters()}
    state.update({n: t for n, t in archive.named_buffers()})
    members.load_state_dict(state, strict=True)
    members.eval()
    lam = np.exp(np.linspace(math.log(2500), math.log(10500), N_OUT + 1))
    centre = np.sqrt(lam[:-1] * lam[1:])
    band = np.where(centre < 4100, "GU", np.where(centre < 6350, "GV", "GI"))
    scale = torch.tensor([side["sigma_scale"][b] for b in band], dtype=torch.float32)
    bc = side.get("bias_correction")
    members.bias = None
    if bc:  # network/model_io.h BiasFeatures / ApplyBiasCorrection
        members.bias = torch.tensor(bc["coefficients"], dtype=torch.float64)  # 574 x 9
        members.gu = torch.from_numpy((centre >= 2550) & (centre <= 4200))
        members.gi = torch.from_numpy((centre >= 6200) & (centre <= 10000))
    return members, scale


def bias_correction(members, mu, flux, err):
    """mu * exp(clamp(sum_j coeff[k][j] f_j, +-0.5)), f = (1, u, i, u^2, u i, i^2, s, s u, s^2)."""
    m = mu.double()
    u = m[:, members.gu].mean(1).clamp_min(1e-6).log()
    i = m[:, members.gi].mean(1).clamp_min(1e-6).log()
    ratio = (flux.abs() / err).double()
    ratio[(err <= 0) | (err == 1.0)] = float("nan")  # masked pixels carry err 1
    snr = torch.nanquantile(ratio, 0.5, dim=1, interpolation="higher").nan_to_num(30.0)
    s = (snr.clamp(1.0, 1e4) / 30.0).log()
    f = torch.stack([torch.ones_like(u), u, i, u * u, u * i, i * i, s, s * u, s * s], 1)
    return (m * (f @ members.bias.T).clamp(-0.5, 0.5).exp()).float()


def predict(members, scale, flux, err):
    mus, var = [], 0
    for m in members.values():
        mu, sigma = m(flux, err)
        mus.append(mu)
        var = var + sigma * sigma
    mus = torch.stack(mus)
    mean = mus.mean(0)
    var = var / len(mus)
    if len(mus) > 1:
        rel = (mus - mean) / mean.abs().clamp_min(1e-6)
        var = var + (rel * rel).mean(0)
    if members.bias is not None:
        mean = bias_correction(members, mean, flux, err)
    return mean, var.sqrt() * scale


def main():
    model, inp, ref = sys.argv[1:4]
    torch.set_num_threads(int(sys.argv[4]) if len(sys.argv) > 4 else 1)
    members, scale = load(model)
    x = torch.from_numpy(np.load(inp))
    cpp = np.load(ref)
    n = x.shape[0]
    with torch.inference_mode():
        mu, sigma = predict(members, scale, x[:, 0], x[:, 1])
        out = torch.stack([mu, sigma], 1).numpy()
        rel = np.abs(out - cpp) / np.maximum(np.abs(cpp), 1e-30)
        print("python3-torch %s: largest relative difference to C++ mu %.1e, sigma %.1e (%d spectra)"
              % (torch.__version__, rel[:, 0].max(), rel[:, 1].max(), n))
        for batch in (1, 64, 2048):
            m = 200 if batch == 1 else n
            predict(members, scale, x[: min(batch, m), 0], x[: min(batch, m), 1])  # warm-up
            t0 = time.perf_counter()
            for a in range(0, m, batch):
                predict(members, scale, x[a : a + batch, 0], x[a : a + batch, 1])
            print("UaRA-net inference (python3-torch, %d threads): batch %4d: %.0f spectra/s"
                  % (torch.get_num_threads(), batch, m / (time.perf_counter() - t0)))


if __name__ == "__main__":
    main()
