"""The synthetic "MLP manifold" image data set (paper appendix A, Fig. 6-8).

The paper: "a randomly initialized two-layer MLP applied to 16-dimensional
Gaussian noise, followed by superimposing whitened stripes at different
spatial locations according to randomly assigned class labels i = 0..9", a
distribution in R^{32x32x1} supported on a 16-dimensional manifold. The
authors' exact recipe is not public; this is ours, fixed by ``seed``:

1. Latent u ~ N(0, I_k), k = ``latent_dim``.
2. Hidden layer h = tanh(W1 u + b1), width H = ``hidden`` (256), with
   W1_ij ~ N(0, GAIN^2 / k) (GAIN = 1.5, so each pre-activation has std
   ~1.5 plus the bias: neither linear nor saturated) and b1_j ~ N(0, BIAS_STD^2)
   (BIAS_STD = 0.5). tanh' > 0 everywhere, so the map is an immersion
   (Jacobian of rank k) for almost every draw of the weights.
3. Output layer y = W2 h / sqrt(H) with W2 = blur(G): each of the H columns of
   G ~ N(0, 1)^{r x r} is an r x r white-noise image smoothed by a separable
   Gaussian blur of std r / 16 pixels (2 px at r = 32; the 1-D blur matrix
   has rows exp(-(i - j)^2 / (2 s^2)) normalised to sum 1, so borders are
   renormalised, not zero-padded). Every image is thus a smooth random field;
   the blur is linear and injective, so it does not lower the rank.
4. Per-pixel affine normalisation x = 0.5 (y - m_p) / s_p, with m_p, s_p the
   mean and (population) std of pixel p over a fixed calibration sample of
   10,000 latents (generator seeded with ``derived_seed(seed,
   "mlp-manifold/normalisation")``). The unlabelled field therefore has mean 0
   and std 0.5 in every pixel (EDM's sigma_data), values roughly in [-1, 1].
5. Labels (``num_classes`` = C > 0): class c owns a stripe, a band of width
   w = max(1, r // 8) pixels, horizontal or vertical. The 2 (r // w) slots
   (rows 0..w-1, w..2w-1, ... and the same columns) are shuffled by the seed
   and class c gets slot perm[c], so no two classes share a band (a
   horizontal and a vertical one cross in a w x w square). The stripe is
   whitened: inside it x <- x + 0.8 (1 - x), i.e. blended 80% towards white
   (+1), so stripe pixels have mean 0.8 and std 0.1 and still move with u
   (the manifold keeps dimension k). C <= 2 (r // w) (16 for r a multiple
   of 8).

Steps 2-4 fold into two matrix products (W1, b1) and (A, c), so a batch of
images costs two matmuls and a tanh. The weights come from a generator
seeded with ``derived_seed(seed, "mlp-manifold/weights")``, drawn in float64
on the CPU in the order W1, b1, G, slot permutation; the global RNG is never
used. ``mean`` and ``std`` are the overall mean and std of the data set (over
all pixels of the calibration sample, labels uniform): exactly 0 and 0.5
without labels, slightly higher with stripes (~0.10 and ~0.54 for 10 classes
at r = 16 or 32); use ``std`` as EDM's sigma_data.
"""
from __future__ import annotations

import math
from typing import Optional

import torch

from ..runs import derived_seed, make_generator

GAIN = 1.5              # std scale of W1 u (variance-preserving in k, times GAIN)
BIAS_STD = 0.5          # std of the hidden biases b1
BLUR_PER_RES = 1 / 16   # Gaussian blur std in pixels, as a fraction of the resolution
TARGET_STD = 0.5        # per-pixel std after normalisation (EDM sigma_data)
STRIPE_BLEND = 0.8      # stripe pixels: x + STRIPE_BLEND * (1 - x)
CALIBRATION_N = 10_000  # latents of the fixed calibration sample
RECIPE_VERSION = "v1"


def _int_arg(name, value, low, allowed):
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer {allowed}, got {value!r}")


def _same_device(a: torch.device, b: torch.device) -> bool:
    """Equal devices, reading "cuda" without an index as the current CUDA device."""
    if a.type != b.type:
        return False
    if a.type != "cuda":
        return True
    cur = torch.cuda.current_device()
    return (cur if a.index is None else a.index) == (cur if b.index is None else b.index)


def _blur_matrix(r: int, sigma: float) -> torch.Tensor:
    i = torch.arange(r, dtype=torch.float64)
    k = torch.exp(-(i[:, None] - i[None, :]) ** 2 / (2 * sigma ** 2))
    return k / k.sum(1, keepdim=True)


class MLPManifold:
    """A k-dimensional manifold of r x r x 1 images: a random two-layer MLP of Gaussian latents (module doc).

    ``decode(u, labels)`` maps latents to images (differentiable in u);
    ``sample(n, generator)`` draws (images, labels). No trainable parameters:
    every tensor is fixed by ``seed``.
    """

    def __init__(self, latent_dim: int = 16, resolution: int = 32, num_classes: int = 10, seed: int = 0,
                 hidden: int = 256):
        _int_arg("resolution", resolution, 4, ">= 4")
        _int_arg("hidden", hidden, 1, ">= 1")
        _int_arg("latent_dim", latent_dim, 1, f">= 1 and <= min(hidden, resolution**2)")
        if latent_dim > hidden or latent_dim > resolution ** 2:
            raise ValueError(f"latent_dim must be an integer >= 1 and <= min(hidden, resolution**2) = "
                             f"{min(hidden, resolution ** 2)} (the Jacobian cannot have a larger rank), "
                             f"got {latent_dim!r}")
        width = max(1, resolution // 8)
        slots = 2 * (resolution // width)
        _int_arg("num_classes", num_classes, 0, f">= 0 and <= {slots} (one stripe slot per class)")
        if num_classes > slots:
            raise ValueError(f"num_classes must be an integer >= 0 and <= {slots} (one stripe slot per class at "
                             f"resolution {resolution}), got {num_classes!r}")
        _int_arg("seed", seed, 0, ">= 0")
        self.latent_dim, self.resolution, self.num_classes = latent_dim, resolution, num_classes
        self.seed, self.hidden, self.stripe_width = seed, hidden, width
        k, r, h = latent_dim, resolution, hidden

        g = make_generator(derived_seed(seed, "mlp-manifold/weights"), "cpu")
        w1 = torch.randn(h, k, generator=g, dtype=torch.float64) * (GAIN / math.sqrt(k))
        b1 = torch.randn(h, generator=g, dtype=torch.float64) * BIAS_STD
        noise = torch.randn(h, r, r, generator=g, dtype=torch.float64)
        perm = torch.randperm(slots, generator=g)[:num_classes]
        blur = _blur_matrix(r, BLUR_PER_RES * r)
        w2 = (blur @ noise @ blur.T).reshape(h, r * r) / math.sqrt(h)

        # stripes: slot s < r // w is the horizontal band of rows [s w, (s+1) w), else the vertical band
        stripes = torch.zeros(num_classes, r, r, dtype=torch.float64)
        per = r // width
        for c, s in enumerate(perm.tolist()):
            lo = (s % per) * width
            if s < per:
                stripes[c, lo:lo + width, :] = 1.0
            else:
                stripes[c, :, lo:lo + width] = 1.0
        self.stripe_slots = [("horizontal" if s < per else "vertical", (s % per) * width) for s in perm.tolist()]

        # per-pixel normalisation from the fixed calibration sample
        gc = make_generator(derived_seed(seed, "mlp-manifold/normalisation"), "cpu")
        u = torch.randn(CALIBRATION_N, k, generator=gc, dtype=torch.float64)
        y = torch.tanh(u @ w1.T + b1) @ w2
        m, s = y.mean(0), y.std(0, unbiased=False)
        self.w1, self.b1 = w1, b1
        self.w_out = w2 * (TARGET_STD / s)
        self.b_out = -m * (TARGET_STD / s)
        self.stripes = stripes.reshape(num_classes, r * r) * STRIPE_BLEND
        labels = torch.randint(0, num_classes, (CALIBRATION_N,), generator=gc) if num_classes else None
        x = self.decode(u, labels)
        self.mean = float(x.mean())
        self.std = float(x.std(unbiased=False))
        self.to(dtype=torch.float32)

    # --- device and dtype -------------------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.w1.device

    @property
    def dtype(self) -> torch.dtype:
        return self.w1.dtype

    def to(self, device=None, dtype: Optional[torch.dtype] = None) -> "MLPManifold":
        """Move the fixed tensors to ``device`` and/or cast them to the floating ``dtype``, in place; returns self."""
        if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
            raise ValueError(f"dtype must be a floating torch.dtype, got {dtype!r}")
        for name in ("w1", "b1", "w_out", "b_out", "stripes"):
            setattr(self, name, getattr(self, name).to(device=device, dtype=dtype))
        return self

    # --- identity ---------------------------------------------------------------------------------------------------
    @property
    def data_id(self) -> str:
        """Names the recipe and its parameters (identifies the training data in run folders)."""
        return (f"mlp-manifold:k={self.latent_dim}:r={self.resolution}:c={self.num_classes}:h={self.hidden}"
                f":seed={self.seed}:{RECIPE_VERSION}")

    @property
    def image_shape(self) -> tuple:
        return (1, self.resolution, self.resolution)

    def __repr__(self) -> str:
        return f"MLPManifold({self.data_id!r}, device={self.device}, dtype={self.dtype})"

    # --- maps -------------------------------------------------------------------------------------------------------
    def _check_labels(self, labels, n=None):
        if self.num_classes == 0:
            if labels is not None:
                raise ValueError("labels must be None for an unconditional manifold (num_classes=0)")
            return
        allowed = f"values in 0..{self.num_classes - 1} (num_classes={self.num_classes})"
        if (not isinstance(labels, torch.Tensor) or labels.dtype != torch.long or labels.ndim != 1
                or (n is not None and labels.shape[0] != n)):
            got = (f"{labels.dtype} of shape {tuple(labels.shape)}" if isinstance(labels, torch.Tensor)
                   else type(labels).__name__)
            raise ValueError(f"labels must be a LongTensor of shape [{'n' if n is None else n}] with {allowed}, "
                             f"got {got}")
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= self.num_classes):
            raise ValueError(f"labels must have {allowed}")

    def decode(self, u: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Images ``[n, 1, r, r]`` of latents ``u [n, latent_dim]`` (differentiable in u) with class ``labels``.

        ``labels`` (LongTensor [n], values 0..num_classes-1) is required when
        num_classes > 0 and must be None when num_classes == 0. ``u`` must be
        on the manifold's device, with its dtype (see ``to``).
        """
        if not isinstance(u, torch.Tensor) or u.ndim != 2 or u.shape[1] != self.latent_dim:
            raise ValueError(f"u must be a tensor of shape [n, {self.latent_dim}] (latent_dim), got "
                             f"{tuple(u.shape) if isinstance(u, torch.Tensor) else type(u).__name__}")
        if u.dtype != self.dtype or not _same_device(u.device, self.device):
            raise ValueError(f"u must be {self.dtype} on {self.device} (the manifold's; call .to(device, dtype) "
                             f"to move it), got {u.dtype} on {u.device}")
        n = u.shape[0]
        self._check_labels(labels, n)
        h = torch.tanh(torch.addmm(self.b1, u, self.w1.T))
        x = torch.addmm(self.b_out, h, self.w_out)
        if self.num_classes:
            m = self.stripes[labels]
            x = x + m * (1.0 - x)
        return x.view(n, 1, self.resolution, self.resolution)

    def sample(self, n: int, generator: Optional[torch.Generator] = None, device=None):
        """``n`` i.i.d. images and their labels: u ~ N(0, I) then uniform labels, both from ``generator``.

        Returns ``(images [n, 1, r, r], labels LongTensor [n])``, labels None when
        num_classes == 0. ``device`` defaults to (and must equal) the manifold's.
        """
        _int_arg("n", n, 1, ">= 1")
        if device is not None and not _same_device(torch.device(device), self.device):
            raise ValueError(f"device must be the manifold's device {self.device} (call .to({str(device)!r}) first), "
                             f"got {device!r}")
        u = torch.randn(n, self.latent_dim, generator=generator, device=self.device, dtype=self.dtype)
        labels = (torch.randint(0, self.num_classes, (n,), generator=generator, device=self.device)
                  if self.num_classes else None)
        return self.decode(u, labels), labels

    def distance(self, x: torch.Tensor, labels: Optional[torch.Tensor] = None, bank: int = 50_000,
                 steps: int = 200, lr: float = 0.05, seed: int = 0) -> torch.Tensor:
        """Euclidean distance of each image ``x [n, 1, r, r]`` from the manifold (of its class ``labels``): an upper bound.

        min_u ||decode(u, labels) - x|| is found in two stages: the nearest of
        ``bank`` decoded latents u ~ N(0, I) (drawn from a generator seeded
        with ``seed``; with labels, decoded with each image's own label), then
        ``steps`` Adam steps (learning rate ``lr``) on u from there. A local
        search, so the result bounds the true distance from above; it is 0 for
        images of the manifold up to float error. Returns a float tensor [n] on
        the manifold's device; ``x`` is not modified. The latents found are
        :meth:`project`'s.
        """
        return self.project(x, labels, bank=bank, steps=steps, lr=lr, seed=seed)[1]

    def project(self, x: torch.Tensor, labels: Optional[torch.Tensor] = None, bank: int = 50_000,
                steps: int = 200, lr: float = 0.05, seed: int = 0) -> tuple:
        """``(u [n, latent_dim], distance [n])``: the latent of the nearest manifold point found, and its distance.

        The search of :meth:`distance` (the same computation: ``distance`` is
        this function's second output): the nearest of ``bank`` decoded
        latents, refined by ``steps`` Adam steps; ``u`` is whichever of the
        two is nearer. It recovers the intrinsic coordinates u of an image of
        the manifold (``decode(u, labels)``) up to the search's precision, and
        of an image near it the latent of a nearby manifold point.
        """
        _int_arg("bank", bank, 1, ">= 1")
        _int_arg("steps", steps, 0, ">= 0")
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or tuple(x.shape[1:]) != self.image_shape:
            raise ValueError(f"x must be a tensor of shape [n, {', '.join(map(str, self.image_shape))}], got "
                             f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
        n = x.shape[0]
        self._check_labels(labels, n)
        flat = x.detach().to(device=self.device, dtype=self.dtype).flatten(1)
        g = make_generator(seed, "cpu")
        bank_u = torch.randn(bank, self.latent_dim, generator=g, dtype=self.dtype).to(self.device)
        if self.num_classes == 0:
            cand = self.decode(bank_u).flatten(1)
            start = bank_u[torch.cdist(flat, cand).argmin(1)]
        else:   # per class: the nearest bank point decoded with that class's stripe
            start = torch.empty(n, self.latent_dim, dtype=self.dtype, device=self.device)
            for c in labels.unique().tolist():
                rows = (labels == c).nonzero().flatten()
                cand = self.decode(bank_u, torch.full((bank,), c, dtype=torch.long, device=self.device)).flatten(1)
                start[rows] = bank_u[torch.cdist(flat[rows], cand).argmin(1)]
        u = start.clone().requires_grad_(True)
        opt = torch.optim.Adam([u], lr=lr)
        with torch.enable_grad():
            for _ in range(steps):
                opt.zero_grad(set_to_none=True)
                ((self.decode(u, labels).flatten(1) - flat) ** 2).sum().backward()
                opt.step()
        with torch.no_grad():
            d_opt = (self.decode(u, labels).flatten(1) - flat).norm(dim=1)
            d_start = (self.decode(start, labels).flatten(1) - flat).norm(dim=1)
            best = torch.minimum(d_opt, d_start)
            u = torch.where((d_start < d_opt)[:, None], start, u.detach())
        return u, best

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """The class of each image ``x [n, 1, r, r]`` (LongTensor [n]): the nearest stripe template.

        argmin_c mean_{p in stripe c} (x_p - STRIPE_BLEND)^2: a clean image of
        class c has x_p = STRIPE_BLEND + (1 - STRIPE_BLEND) b_p in its stripe
        (b the unlabelled field, std 0.5), so its own stripe lies within
        ~0.1 of the level and every other band ~0.9 away (rms). Exact on clean
        samples in practice (no error in 50,000 samples at r = 8, 16 and 32,
        tests/test_measures.py); additive noise adds its variance to every
        class's score alike, so the ranking is robust to it. Needs num_classes > 0.
        """
        if self.num_classes == 0:
            raise ValueError("classify needs num_classes > 0 (this manifold is unconditional)")
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or tuple(x.shape[1:]) != self.image_shape:
            raise ValueError(f"x must be a tensor of shape [n, {', '.join(map(str, self.image_shape))}], got "
                             f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
        flat = x.detach().to(device=self.device, dtype=self.dtype).flatten(1)
        mask = (self.stripes > 0).to(self.dtype)                              # [C, r*r]
        sq = (flat - STRIPE_BLEND) ** 2
        return (sq @ mask.T / mask.sum(1)).argmin(1)

    def one_hot(self, labels: torch.Tensor) -> torch.Tensor:
        """Float one-hot rows ``[n, num_classes]`` of class indices (the networks' label input)."""
        if self.num_classes == 0:
            raise ValueError("one_hot needs num_classes > 0 (this manifold is unconditional)")
        self._check_labels(labels)
        return torch.nn.functional.one_hot(labels, self.num_classes).to(self.dtype)
