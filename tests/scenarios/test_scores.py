"""The benchmark scores joint scenarios with scoringrules and, for the full joint vector, with the
package's chunked energy_score: the two agree."""
import numpy as np
import scoringrules as sr
import torch

from forecasting.evaluation.metrics import energy_score


def test_package_energy_score_equals_scoringrules():
    g = torch.Generator().manual_seed(0)
    fct = torch.randn(3, 40, 25, generator=g, dtype=torch.float64)
    obs = torch.randn(3, 25, generator=g, dtype=torch.float64)
    ours = energy_score(fct, obs, chunk=7).numpy()
    np.testing.assert_allclose(ours, sr.es_ensemble(obs.numpy(), fct.numpy(), backend="numpy"), rtol=1e-8)


def test_dependence_lowers_the_variogram_score_when_the_truth_is_dependent():
    # truth: two perfectly co-moving series; joint scenarios co-move, independent ones do not
    g = torch.Generator().manual_seed(1)
    z = torch.randn(500, generator=g, dtype=torch.float64)
    joint = torch.stack([z, z], -1)[None]
    indep = torch.stack([z, z[torch.randperm(500, generator=g)]], -1)[None]
    obs = torch.tensor([[1.5, 1.5]], dtype=torch.float64)
    vs = lambda f: float(sr.vs_ensemble(obs.numpy(), f.numpy(), backend="numpy")[0])
    assert vs(joint) < vs(indep)
