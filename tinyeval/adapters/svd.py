"""Top-r truncated SVD of frozen weights: block Krylov with a residual error bound, exact fallback, disk cache.

Why not `torch.svd_lowrank(W, q, niter)`: real weights have σ₂ ≈ σ₃ (SmolLM2: median σ₂/σ₃ = 1.04) and a slowly
decaying spectrum, so a fixed, small number of power iterations silently returns singular values well below the
true ones (SmolLM2, q=10, niter=2: σ₁+σ₂ as low as 0.85 of exact). Why not PEFT's full `torch.linalg.svd`: it
costs O(m·n²) per matrix (minutes per Qwen2.5-7B layer on a CPU) to keep 2 of its n singular triplets.

`top_svd` builds a block Krylov subspace span{X, (WᵀW)X, (WᵀW)²X, …} in W's smaller dimension from a seeded
Gaussian block X and takes Rayleigh–Ritz pairs (θᵢ, zᵢ) of A = WᵀW from it (θᵢ = σᵢ²). It stops when an error
bound, not a change between steps, says every top-r σ is within `tol` of the truth:
  * Ritz values only grow towards the true eigenvalues (Cauchy interlacing: θᵢ ≤ λᵢ), so the error is one-sided;
  * the residuals cost no extra pass: the next Krylov block Y = A·X_last, orthogonalised against the basis,
    is exactly the part of A·basis outside the basis, so the residual of Ritz vector i is ‖Y⊥ zᵢ[last block]‖;
  * with R_ℓ the residual of the top-ℓ Ritz vectors, |λᵢ − θᵢ| ≤ ‖R_r‖ (Kahan) and, for every ℓ ≥ r,
    |λᵢ − θᵢ| ≤ ‖R_ℓ‖² / δ_ℓ (the quadratic residual bound), where δ_ℓ = θ_ℓ − (θ_ℓ₊₁ + ‖R_ℓ₊₁‖) is at most
    the gap θ_ℓ − λ_ℓ₊₁ to the rest of the spectrum. The loop takes the smallest of these bounds; the quadratic
    one is what lets it stop early on σ₂ ≈ σ₃, by treating the pair as one cluster, where single Ritz vectors
    converge slowly; the stopping test is bound ≤ tol·(2 − tol)·θ_r, which keeps every top-r σ within tol.
Both bounds assume the Ritz values are matched to the top eigenvalues in order, i.e. that the Gaussian start
block is not orthogonal to a top singular vector (probability zero; every Krylov method rests on it). The
default target tol = 1e-3 (relative, on σ) is ten times tighter than the 1% the adapters need; on SmolLM2's 210
matrices the measured error is ≤ 3.3e-4 (the old stopping rule, Ritz values changing by < 1e-5 per step, was
not a bound and took ~1.5 more block steps). If the bound is not met within `max_dim` basis vectors, the exact SVD is
computed instead and the result says so.

Cost: each block step is two passes over W (W·X and Wᵀ·(WX)); on a CPU those are memory-bound, so the loop is
written for that: the Wᵀ product is a skinny row block times the contiguous W (~2x faster than the other way
round; a transposed copy to get the same for the W product cost more than it saved), and the new Rayleigh–Ritz
entries X_lastᵀ·A·basis are the first Gram–Schmidt coefficients of Y, which the step computes anyway. The block
width depends on the matrix size (`block_for`: 4 for small matrices, 8 for large ones). On small CPU matrices
torch's per-call dispatch and MKL's skinny GEMM were most of the time, so there the block step (products,
Gram–Schmidt, normalisation) runs compiled (`svd_kernels`, ~2x); batching same-shape matrices through bmm did
not help (the batch falls out of L2), so matrices run one by one, each in cache.

Signs are canonical (largest-magnitude entry of each column of U positive), so two runs — or the exact and the
fast path — give the same factors whenever the top-r singular values are distinct.
"""

from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from itertools import accumulate
from pathlib import Path

import torch

from tinyeval.models import cache_dir

_CACHE_VERSION = "2"
_SMALL = 1 << 22  # elements; below this one thread is faster (see _threads_for)
_staging = threading.local()  # reused buffers: fp32 copies of small weights (_fp32), host bytes (_host_chunks)


@dataclass(frozen=True)
class SvdSettings:
    """How `top_svd` runs.

    method: "krylov" (fast, checked; falls back to exact when it does not converge) or "exact"
        (`torch.linalg.svd`, what PEFT's TinyLoRA init does).
    block: columns per Krylov block (≥ rank); 0 picks by size (`block_for`).
    tol: target relative accuracy of each top-r singular value; the loop stops once the residual error bound
        (module docstring) guarantees it.
    max_dim: basis size before giving up on Krylov and computing the exact SVD instead (at least two blocks,
        at most W's smaller side). Flat spectra need the most: random-init (Gaussian) MLP weights of Qwen2.5-7B,
        Llama-3.1-8B and Qwen3-8B shapes converge at a basis of 208-216, just past the earlier 192, which sent
        all 84 MLP matrices of a random 7B model to the exact SVD (50-145 s each on one CPU thread, ~100 s for
        the model on an H200, against 2-5 s each here); real weights converge far below either.
    check_from: the basis size at which the stopping test starts: before it the eigen-solve and residuals are
        skipped (~0.2 ms for a 48×48 eigh, against ~0.8 ms for a block's two products on a SmolLM2 MLP
        matrix), since no real matrix measured converged below it (SmolLM2's 210 and Qwen2.5-7B's shapes need
        a basis of 30 at the least).
    exact_below: matrices whose smaller side is at most this take the exact SVD directly: there it is both
        exact and about as fast as a few block steps.
    seed: seed of the Gaussian start block (results are deterministic for a given seed).
    """

    method: str = "krylov"
    block: int = 0
    tol: float = 1e-3
    max_dim: int = 384
    check_from: int = 28
    exact_below: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in ("krylov", "exact"):
            raise ValueError(f"svd method must be 'krylov' or 'exact', got {self.method!r}")
        if self.block < 0 or self.max_dim < 2 or not 0 < self.tol < 1 or self.check_from < 1:
            raise ValueError(f"invalid SVD settings: {self}")


@dataclass
class TopSvd:
    """W ≈ U diag(S) Vᵀ restricted to the top r triplets. U: (m, r), S: (r,), V: (n, r), all fp32."""

    U: torch.Tensor
    S: torch.Tensor
    V: torch.Tensor
    method: str  # "krylov", "exact", "exact-fallback" or "cache"
    passes: int  # passes over W (matrix products with W or Wᵀ); 0 for exact


def _canonical_signs(U: torch.Tensor, V: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Flip each (u_j, v_j) pair so the largest-magnitude entry of u_j is positive (SVD sign ambiguity)."""
    idx = U.abs().argmax(dim=0)  # (r,)
    sign = torch.sign(U[idx, torch.arange(U.shape[1])])
    sign[sign == 0] = 1
    return U * sign, V * sign


def _exact(W: torch.Tensor, r: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    U, S, Vh = torch.linalg.svd(W, full_matrices=False)
    return U[:, :r], S[:r], Vh[:r].T


def _error_bound(lam: list[float], res2: list[float], r: int) -> float:
    """A bound on maxᵢ≤ᵣ |λᵢ − θᵢ|: the smallest of Kahan's ‖R_r‖ and the quadratic ‖R_ℓ‖²/δ_ℓ over ℓ ≥ r.

    lam: Ritz values θ₁ ≥ θ₂ ≥ …; res2: the squared residual norm of each Ritz vector, same order. ‖R_ℓ‖ is
    the Frobenius norm of the top-ℓ residuals (≥ the spectral norm the bounds use).
    """
    sq = list(accumulate(res2))  # sq[ℓ-1] = ‖R_ℓ‖_F²
    bound = sq[r - 1] ** 0.5
    for ell in range(r, len(lam)):
        gap = lam[ell - 1] - lam[ell] - sq[ell] ** 0.5  # δ_ℓ = θ_ℓ − (θ_ℓ₊₁ + ‖R_ℓ₊₁‖) ≤ θ_ℓ − λ_ℓ₊₁
        if gap > 0:
            bound = min(bound, sq[ell - 1] / gap)
    return bound


def _krylov(W: torch.Tensor, r: int, s: SvdSettings) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int] | None:
    """Block Krylov on A = WᵀW with W (m, n), n ≤ m. Returns (U, S, V, passes), or None if the bound was not met.

    Row form, so every product is a skinny row block times a matrix: Qt (d, n) holds the orthonormal basis as
    rows, Pt = Qt·Wᵀ (d, m), G = Qt·A·Qtᵀ (d, d), filled block row by block row up to the diagonal block (eigh reads the lower triangle).
    """
    m, n = W.shape
    k = min(max(s.block or block_for(W), r), n)
    dmax = min(n, max(s.max_dim, 2 * k))
    Qt, Pt, G = W.new_empty(dmax, n), W.new_empty(dmax, m), W.new_zeros(dmax, dmax)
    gen = torch.Generator().manual_seed(s.seed)
    Qt[:k] = torch.linalg.qr(torch.randn(n, k, generator=gen))[0].T.to(W.device)  # (k, n)
    products, project, orthonormalize = _ops(W, k)
    eps = s.tol * (2 - s.tol)  # relative error on θ = σ² that keeps σ within tol
    d = 0
    while True:
        Yt = products(Qt[d:d + k], Pt[d:d + k])  # Pt rows ← (W·X)ᵀ; Yt (k, n) = (A·X)ᵀ
        d += k
        project(Yt, Qt[:d], G[d - k:d, :d])  # the new rows of G are Xᵀ·A·basis, Gram–Schmidt's coefficients
        if d < s.check_from and d + k <= dmax:
            orthonormalize(Yt, Qt[d:d + k])
            continue
        try:
            lam, Z = torch.linalg.eigh(G[:d, :d])  # ascending
        except torch.linalg.LinAlgError:  # seen on a rank-1 W, whose basis has zero rows (svd_kernels.orthonormalize)
            return None
        Zl = Z[d - k:]  # (k, d): last-block coordinates; the residual of Ritz vector i is Y⊥ᵀ·Zl[:, i]
        res2 = ((Yt @ Yt.T) @ Zl * Zl).sum(0).clamp_min_(0)  # (d,); rounding can make a ~0 residual negative
        th = lam.tolist()[::-1]
        # the allowed error eps·θ_r must stand well above fp32 rounding (~1e-7·θ₁ in G and the residuals): a
        # weight of rank below r, or with θ_r < 1e-6·θ₁/eps (σ_r < 0.022·σ₁ at the default tol), goes exact
        if th[r - 1] * eps > 1e-6 * th[0] and _error_bound(th, res2.tolist()[::-1], r) <= eps * th[r - 1]:
            break
        if d + k > dmax:
            return None
        orthonormalize(Yt, Qt[d:d + k])
    Z = Z[:, -r:].flip(1)  # top-r Ritz vectors in basis coordinates, descending
    S = lam[-r:].flip(0).clamp_min(0).sqrt()
    return (Z.T @ Pt[:d]).T / S, S, (Z.T @ Qt[:d]).T, 2 * d // k  # U (m, r), S (r,), V (n, r), passes


def _ops(W: torch.Tensor, k: int):
    """The three operations of a block step, as (products, project, orthonormalize):

    products(X, P) fills P = X·Wᵀ and returns Y = P·W; project(Y, Q, C) removes span(Q) from Y in place
    (Gram–Schmidt twice, as fp32 needs) and writes the first pass's coefficients into C; orthonormalize(Y, out)
    writes an orthonormal basis of Y's rows into out. Small fp32 CPU matrices at block 4 run them compiled
    (`svd_kernels`: their steps are tiny, and torch's per-call dispatch and MKL's skinny GEMM were most of the
    time); everything else runs them as torch calls, on W's device.
    """
    if k == 4 and W.device.type == "cpu" and W.dtype == torch.float32 and W.numel() < _SMALL and (
            W.is_contiguous() or W.T.is_contiguous()):
        from tinyeval.adapters import svd_kernels as K

        tall = W.is_contiguous()
        w = W.numpy() if tall else W.T.numpy()
        sweep = K.tall4 if tall else K.wide4

        def products(X: torch.Tensor, P: torch.Tensor) -> torch.Tensor:
            Y = W.new_empty(k, W.shape[1])
            sweep(w, X.numpy(), P.numpy(), Y.numpy())
            return Y

        return (products, lambda Y, Q, C: K.project(Y.numpy(), Q.numpy(), C.numpy()),
                lambda Y, out: K.orthonormalize(Y.numpy(), out.numpy()))

    def products(X: torch.Tensor, P: torch.Tensor) -> torch.Tensor:
        torch.mm(X, W.T, out=P)
        return P @ W

    def project(Y: torch.Tensor, Q: torch.Tensor, C: torch.Tensor) -> None:
        C.copy_(Y @ Q.T)
        Y.addmm_(C, Q, alpha=-1)
        Y.addmm_(Y @ Q.T, Q, alpha=-1)

    def orthonormalize(Y: torch.Tensor, out: torch.Tensor) -> None:
        out.copy_(torch.linalg.qr(Y.T)[0].T)

    return products, project, orthonormalize


def block_for(W: torch.Tensor) -> int:
    """Krylov block width for W: 4 for small matrices, 8 for large ones.

    For a fixed basis size, narrower blocks reach a higher Krylov degree, so they need fewer basis vectors
    (SmolLM2 down_proj: a basis of ~52 at width 8, ~32 at width 4), but
    they take more passes over W. A small matrix sits in cache and a pass costs little more than its dispatch
    and the per-step eigen-solve, so the narrower block wins (SmolLM2's 210 matrices, 1 thread, AVX2 EPYC:
    1.27 s at width 4 against 1.60 s at 8, 1.32 s at 6 and 3); a large one streams from memory, every pass
    costs the same whatever the width, and the wider block wins (Qwen2.5-7B layer shapes: 2.8 s at 8 against
    4.0 s at 4 and 3.2 s at 6).
    """
    return 4 if W.numel() < _SMALL else 8


@contextmanager
def _threads_for(W: torch.Tensor):
    """One CPU thread for small matrices: their Krylov steps are tiny ops whose OpenMP fork/join costs more
    than the work (50× slower on a loaded 2-core machine); big matrices keep every thread for the products."""
    if W.device.type != "cpu" or W.numel() >= _SMALL:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _fp32(W: torch.Tensor) -> torch.Tensor:
    """W in fp32. A small CPU weight is converted into a reused per-thread buffer: glibc hands freed multi-MB
    blocks back to the OS, so a fresh fp32 copy per call page-faults all its memory in again (~1000 faults,
    ~1 ms of ~8 for a SmolLM2 MLP matrix right after PEFT's SVD of the previous one)."""
    if W.dtype == torch.float32 or W.device.type != "cpu" or W.numel() >= _SMALL:
        return W.float()
    buf = getattr(_staging, "buf", None)
    if buf is None or buf.numel() < W.numel():
        buf = _staging.buf = torch.empty(W.numel())
    return buf[:W.numel()].view(W.shape).copy_(W)


def top_svd(W: torch.Tensor, r: int, settings: SvdSettings = SvdSettings()) -> TopSvd:
    """Top-r singular triplets of W (any float dtype; computed in fp32 on W's device)."""
    with _threads_for(W):
        return _top_svd(_fp32(W.detach()), r, settings)


def _top_svd(W: torch.Tensor, r: int, settings: SvdSettings) -> TopSvd:
    krylov = settings.method == "krylov" and min(W.shape) > max(settings.exact_below, 2 * (settings.block or block_for(W)))
    if krylov:
        tall = W.shape[0] >= W.shape[1]  # the basis lives in the smaller dimension
        found = _krylov(W if tall else W.T, r, settings)
        if found is not None:
            U, S, V, passes = found
            U, V = (U, V) if tall else (V, U)
            U, V = _canonical_signs(U, V)
            return TopSvd(U.contiguous(), S.contiguous(), V.contiguous(), "krylov", passes)
    U, S, V = _exact(W, r)
    U, V = _canonical_signs(U, V)
    method = "exact-fallback" if krylov else "exact"
    return TopSvd(U.contiguous(), S.contiguous(), V.contiguous(), method, 0)


def fingerprint(t: torch.Tensor) -> str:
    """xxh3-128 of a tensor's raw bytes plus its shape and dtype: identifies a weight without storing it.

    A tensor on a GPU streams through one reused host buffer (`_host_chunks`) instead of a host copy of its
    own: the same bytes in the same order, so the digest does not depend on the device."""
    import xxhash

    data = t.detach().contiguous()
    h = xxhash.xxh3_128()
    h.update(f"{tuple(data.shape)}|{data.dtype}|".encode())
    flat = data.reshape(-1).view(torch.uint8)
    for chunk in ([flat.numpy().data] if data.device.type == "cpu" else _host_chunks(flat)):
        h.update(chunk)
    return h.hexdigest()


def _host_chunks(flat: torch.Tensor, chunk: int = 1 << 26):
    """The bytes of a flat uint8 tensor, `chunk` at a time, copied through one reused host buffer (pinned when
    CUDA is there: a copy into fresh pageable memory page-faults every byte in, ~13 GB of them for Qwen2.5-7B's
    adapted weights, and runs at a fraction of a pinned copy's speed)."""
    size = min(chunk, flat.numel())
    buf = getattr(_staging, "host", None)
    if buf is None or buf.numel() < size:
        buf = _staging.host = torch.empty(size, dtype=torch.uint8, pin_memory=flat.is_cuda)
    for start in range(0, flat.numel(), chunk):
        part = flat[start:start + chunk]
        host = buf[:part.numel()]
        host.copy_(part)  # synchronous: the buffer is reused by the next chunk
        yield host.numpy().data


def cached_top_svd(W: torch.Tensor, r: int, settings: SvdSettings = SvdSettings(),
                   cache: Path | None = None, key: str | None = None) -> TopSvd:
    """`top_svd` memoised on disk under `cache_dir()/svd`, keyed by the weight's fingerprint and the settings.

    A second run on the same base weights reads r·(m+n+1) floats per matrix instead of recomputing.
    `key` lets a caller that already fingerprinted W skip hashing it again.
    """
    from safetensors.torch import load_file, save_file

    from tinyeval.io import atomic_path

    root = cache if cache is not None else cache_dir() / "svd"
    tag = json.dumps({"v": _CACHE_VERSION, "r": r, **asdict(settings)}, sort_keys=True)
    import xxhash

    name = xxhash.xxh3_64_hexdigest(((key or fingerprint(W)) + tag).encode())
    path = root / f"{name}.safetensors"
    if path.is_file():
        t = load_file(str(path))
        return TopSvd(t["U"].to(W.device), t["S"].to(W.device), t["V"].to(W.device), "cache", 0)
    out = top_svd(W, r, settings)
    with atomic_path(path) as tmp:
        save_file({"U": out.U.cpu(), "S": out.S.cpu(), "V": out.V.cpu()}, str(tmp),
                  metadata={"settings": tag, "method": out.method})
    return out
