"""Top-r truncated SVD of frozen weights: block Krylov with a convergence check, exact fallback, disk cache.

Why not `torch.svd_lowrank(W, q, niter)`: real weights have σ₂ ≈ σ₃ (SmolLM2: median σ₂/σ₃ = 1.04) and a slowly
decaying spectrum, so a fixed, small number of power iterations silently returns singular values well below the
true ones (SmolLM2, q=10, niter=2: σ₁+σ₂ as low as 0.85 of exact). Why not PEFT's full `torch.linalg.svd`: it
costs O(m·n²) per matrix (minutes per Qwen2.5-7B layer on a CPU) to keep 2 of its n singular triplets.

`top_svd` builds a block Krylov subspace span{X, (WᵀW)X, (WᵀW)²X, …} from a seeded Gaussian block X and takes
Rayleigh–Ritz singular triplets from it. Krylov subspaces are nested, so each Ritz value only grows towards the
true one; the loop stops when the top-r Ritz values changed by less than `tol` (relative) over one block step.
If that never happens within `max_blocks`, it falls back to the exact SVD and says so in the result. Every pass
over W is a (k-column) matrix product, which on a CPU is memory-bound: a block of 16 columns costs the same as 2.

Signs are canonical (largest-magnitude entry of each column of U positive), so two runs — or the exact and the
fast path — give the same factors whenever the top-r singular values are distinct.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from tinyeval.models import cache_dir

_CACHE_VERSION = "1"
_SMALL = 1 << 22  # elements; below this one thread is faster (see _threads_for)


@dataclass(frozen=True)
class SvdSettings:
    """How `top_svd` runs.

    method: "krylov" (fast, checked; falls back to exact when it does not converge) or "exact"
        (`torch.linalg.svd`, what PEFT's TinyLoRA init does).
    block: columns per Krylov block (≥ rank); wider blocks converge in fewer passes over W at almost no
        extra cost while the product is memory-bound.
    tol: stop when the top-r Ritz values changed by less than this (relative) in one block step.
    max_blocks: blocks before giving up on Krylov and computing the exact SVD instead.
    exact_below: matrices whose smaller side is at most this take the exact SVD directly: there it is
        both exact and faster (SmolLM2's 192×576 k/v: 0.02 s exact vs 0.023 s Krylov on one core).
    seed: seed of the Gaussian start block (results are deterministic for a given seed).
    """

    method: str = "krylov"
    block: int = 16
    tol: float = 1e-5
    max_blocks: int = 24
    exact_below: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in ("krylov", "exact"):
            raise ValueError(f"svd method must be 'krylov' or 'exact', got {self.method!r}")
        if self.block < 1 or self.max_blocks < 2 or not 0 < self.tol < 1:
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


def _krylov(W: torch.Tensor, r: int, s: SvdSettings) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int] | None:
    """Block Krylov on WᵀW with W (m, n), n ≤ m. Returns (U, S, V, passes), or None if it did not settle.

    Ritz values come from the small Gram G = PᵀP = basisᵀ WᵀW basis (d, d), grown by one block per step;
    only its top values are read, and those are well conditioned in the Gram form.
    """
    m, n = W.shape
    k = min(max(s.block, r), n)
    gen = torch.Generator().manual_seed(s.seed)
    basis = torch.linalg.qr(torch.randn(n, k, generator=gen).to(W.device))[0]  # (n, d) orthonormal, d grows by k
    P = W @ basis  # (m, d) = W·basis
    G = P.T @ P  # (d, d)
    prev = None
    for _ in range(s.max_blocks):
        ritz = torch.linalg.eigvalsh(G).flip(0)[:r].clamp_min(0).sqrt()
        if prev is not None and bool(((ritz - prev).abs() <= s.tol * ritz).all()):
            break
        if basis.shape[1] + k > n:
            return None
        prev = ritz
        Y = (P[:, -k:].T @ W).T  # (n, k) = WᵀW·newest block, written so the product reads W contiguously
        for _ in range(2):  # Gram–Schmidt twice against the whole basis keeps it orthonormal in fp32
            Y = Y - basis @ (basis.T @ Y)
        X = torch.linalg.qr(Y)[0]
        WX = W @ X  # (m, k)
        cross = P.T @ WX  # (d, k)
        G = torch.cat([torch.cat([G, cross], 1), torch.cat([cross.T, WX.T @ WX], 1)], 0)
        basis, P = torch.cat([basis, X], 1), torch.cat([P, WX], 1)
    else:
        return None
    lam, Z = torch.linalg.eigh(G)
    Z = Z.flip(1)[:, :r]  # top-r Ritz vectors in basis coordinates
    S = lam.flip(0)[:r].clamp_min(0).sqrt()
    return (P @ Z) / S, S, basis @ Z, 2 * (basis.shape[1] // k) - 1  # U (m, r), S (r,), V (n, r), passes


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


def top_svd(W: torch.Tensor, r: int, settings: SvdSettings = SvdSettings()) -> TopSvd:
    """Top-r singular triplets of W (any float dtype; computed in fp32 on W's device)."""
    with _threads_for(W):
        return _top_svd(W.detach().float(), r, settings)


def _top_svd(W: torch.Tensor, r: int, settings: SvdSettings) -> TopSvd:
    krylov = settings.method == "krylov" and min(W.shape) > max(settings.exact_below, 2 * settings.block)
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
    """xxh3-128 of a tensor's raw bytes plus its shape and dtype: identifies a weight without storing it."""
    import xxhash

    data = t.detach().contiguous().cpu()
    h = xxhash.xxh3_128()
    h.update(f"{tuple(data.shape)}|{data.dtype}|".encode())
    h.update(data.view(torch.uint8).reshape(-1).numpy().data if data.numel() else b"")
    return h.hexdigest()


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
