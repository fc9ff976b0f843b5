"""scg in under a minute: declare a stochastic graph, derive HNCA, take a few steps."""

import numpy as np

import scg

rng = np.random.default_rng(0)
X = rng.normal(size=(64, 8))                       # 64 rows of 8 features
Y = (X[:, 0] > 0).astype(np.int64)                 # the right "action" per row

g = scg.Graph("quickstart")
with g:
    x = scg.input("x", shape=(8,))
    y = scg.input("y", dtype="int64")
    W1, b1 = scg.param("W1", shape=(8, 16)), scg.param("b1", shape=(16,))
    h = scg.sample("h", scg.Bernoulli(logits=x @ W1 + b1))          # 16 binary units
    W2, b2 = scg.param("W2", shape=(16, 2)), scg.param("b2", shape=(2,))
    a = scg.sample("a", scg.Categorical(logits=h @ W2 + b2))        # an action in {0, 1}
    scg.cost("neg_reward", -scg.equal(a, y))                        # -1 when right

est = scg.compile(g, estimator="hnca", baseline="ema")
print(est.ir)                                      # the derived estimator, as IR

params = g.init_params(seed=0)
for step in range(201):
    out = est(params, {"x": X, "y": Y}, seed=step)
    for name, grad in out.grads.items():
        params[name] -= 0.5 * grad                 # plain SGD on the estimate
    if step % 50 == 0:
        print(f"step {step:3d}  mean reward {-out.cost:.3f}")
