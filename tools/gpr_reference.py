#!/usr/bin/python3
"""Reference values for tests/simulation/gpr_test.cpp from scikit-learn's GaussianProcessRegressor
(Debian python3-sklearn), with the kernel of the paper: C(sigma_f^2) * RBF(l) + White(sigma_n^2).

Writes tests/data/gpr_reference.json. The data set is generated here deterministically (numpy seed 1):
40 points in 3 dimensions, 4 smooth outputs plus noise; inputs z-scored with the population
standard deviation exactly as the C++ code does.
Run: /usr/bin/python3 tools/gpr_reference.py > tests/data/gpr_reference.json
"""
import json

import numpy as np
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

rng = np.random.RandomState(1)
x = np.column_stack([rng.uniform(5000, 9750, 40), rng.uniform(3.5, 5.0, 40), rng.uniform(-1.5, 0.5, 40)])
z = (x - x.mean(0)) / x.std(0)
y = np.column_stack([np.sin(z[:, 0]) + 0.3 * z[:, 1], np.cos(z[:, 2]) * z[:, 0], 0.5 * z[:, 1] ** 2, z.sum(1)])
y = y + 0.05 * rng.normal(size=y.shape)
xq = np.column_stack([np.linspace(5200, 9500, 5), np.linspace(3.6, 4.9, 5), np.linspace(-1.2, 0.3, 5)])
zq = (xq - x.mean(0)) / x.std(0)

fixed = {"sigma_f": 0.9, "sigma_n": 0.05, "ell": 1.3}
k_fixed = ConstantKernel(fixed["sigma_f"] ** 2, "fixed") * RBF(fixed["ell"], "fixed") + WhiteKernel(fixed["sigma_n"] ** 2, "fixed")
g_fixed = GaussianProcessRegressor(kernel=k_fixed, optimizer=None, normalize_y=False).fit(z, y)
mean_fixed, std_fixed = g_fixed.predict(zq, return_std=True)

k = ConstantKernel(1.0, (1e-4, 1e2)) * RBF(1.0, (0.05, 50.0)) + WhiteKernel(1e-3, (1e-10, 1.0))
g = GaussianProcessRegressor(kernel=k, normalize_y=False, n_restarts_optimizer=10, random_state=0).fit(z, y)
p = g.kernel_.get_params()
opt = {"sigma_f": float(np.sqrt(p["k1__k1__constant_value"])), "ell": float(p["k1__k2__length_scale"]),
       "sigma_n": float(np.sqrt(p["k2__noise_level"])), "log_marginal_likelihood": float(g.log_marginal_likelihood_value_)}

print(json.dumps({
    "sklearn_version": __import__("sklearn").__version__,
    "x": x.tolist(), "y": y.tolist(), "xq": xq.tolist(),
    "fixed": fixed,
    "fixed_lml": float(g_fixed.log_marginal_likelihood_value_),
    "fixed_mean": mean_fixed.tolist(),
    "fixed_std_with_noise": std_fixed.tolist(),
    "optimised": opt,
}, indent=1))
