import torch

from tinyeval.adapters.svd import SvdSettings, cached_top_svd, fingerprint, top_svd


def with_spectrum(m: int, n: int, sigma: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """W = Q₁ diag(σ) Q₂ᵀ with random orthonormal Q₁ (m, k), Q₂ (n, k)."""
    g = torch.Generator().manual_seed(seed)
    q1 = torch.linalg.qr(torch.randn(m, len(sigma), generator=g))[0]
    q2 = torch.linalg.qr(torch.randn(n, len(sigma), generator=g))[0]
    return q1 @ torch.diag(sigma) @ q2.T


def hard_spectrum(k: int = 200) -> torch.Tensor:
    """Like real weights: σ₂ ≈ σ₃ (2% apart) and a slowly decaying tail."""
    tail = 4.0 * torch.linspace(1, 0.3, k - 3)
    return torch.cat([torch.tensor([12.0, 5.0, 4.9]), tail])


def test_krylov_finds_top_values_and_vectors_of_a_hard_spectrum():
    sigma = hard_spectrum()
    for shape in [(300, 500), (500, 300)]:
        W = with_spectrum(*shape, sigma)
        fast, exact = top_svd(W, 2), top_svd(W, 2, SvdSettings(method="exact"))
        assert fast.method == "krylov" and exact.method == "exact"
        torch.testing.assert_close(fast.S, sigma[:2], rtol=1e-4, atol=0)
        torch.testing.assert_close(fast.S, exact.S, rtol=1e-4, atol=0)
        # canonical signs make the factors themselves comparable, not just their span
        torch.testing.assert_close(fast.U, exact.U, rtol=0, atol=1e-2)
        torch.testing.assert_close(fast.V, exact.V, rtol=0, atol=1e-2)
        assert fast.U.shape == (shape[0], 2) and fast.V.shape == (shape[1], 2)


def test_torch_svd_lowrank_with_few_iterations_misses_what_krylov_finds():
    """The failure the fast path exists to avoid: few power iterations underestimate σ₂ on flat spectra."""
    W = with_spectrum(400, 600, hard_spectrum(300))
    torch.manual_seed(0)
    low = torch.svd_lowrank(W, q=10, niter=2)[1][:2]
    fast = top_svd(W, 2).S
    exact = torch.linalg.svdvals(W)[:2]
    assert (low / exact).min() < 0.99 < (fast / exact).min()


def test_error_bound_holds_on_flat_and_near_degenerate_spectra():
    """The stopping rule is a bound, not a heuristic: each top-r σ is within tol of exact, whatever the spectrum."""
    g = torch.Generator().manual_seed(1)
    near = torch.cat([torch.tensor([6.0, 5.0, 4.999, 4.998]), 4.0 * torch.linspace(1, 0.5, 180)])
    cases = {"gaussian (flat edge)": torch.randn(640, 192, generator=g),  # σ₁/σ₂ ≈ 1.01, worst case for Krylov
             "near-degenerate σ₂ ≈ σ₃ ≈ σ₄": with_spectrum(192, 576, near, seed=2)}
    for name, W in cases.items():
        exact = torch.linalg.svdvals(W)[:2]
        for tol in (1e-2, 1e-3, 1e-4):
            fast = top_svd(W, 2, SvdSettings(tol=tol))
            assert fast.method == "krylov", name
            ratio = fast.S / exact
            assert (ratio >= 1 - tol).all() and (ratio <= 1 + 1e-5).all(), (name, tol, ratio)


def test_tighter_tolerance_takes_more_passes():
    W = with_spectrum(300, 500, hard_spectrum())
    # check_from=1: test at every block, so the pass count is where the bound is met, not where testing starts
    loose, tight = (top_svd(W, 2, SvdSettings(tol=tol, check_from=1)) for tol in (1e-2, 1e-5))
    assert loose.passes < tight.passes
    assert (tight.S / torch.linalg.svdvals(W)[:2] - 1).abs().max() < 1e-5


def test_unconverged_krylov_falls_back_to_exact():
    assert top_svd(with_spectrum(48, 80, hard_spectrum(40)), 2).method == "exact"  # small: exact directly
    W = with_spectrum(200, 300, hard_spectrum(150))
    out = top_svd(W, 2, SvdSettings(max_dim=2, tol=1e-9, exact_below=0))
    assert out.method == "exact-fallback"
    torch.testing.assert_close(out.S, torch.linalg.svdvals(W)[:2])
    rank1 = with_spectrum(200, 300, torch.tensor([3.0]))
    out = top_svd(rank1, 2)  # σ₂ = 0: no relative bound can be met
    assert out.method == "exact-fallback" and out.U.isfinite().all()
    torch.testing.assert_close(out.S, torch.tensor([3.0, 0.0]), atol=1e-5, rtol=1e-5)


def test_deterministic_and_dtype_agnostic():
    W = with_spectrum(400, 300, hard_spectrum(100))
    a, b = top_svd(W, 2), top_svd(W, 2)
    assert torch.equal(a.U, b.U) and torch.equal(a.S, b.S) and torch.equal(a.V, b.V)
    assert top_svd(W.bfloat16(), 2).U.dtype == torch.float32


def test_reused_fp32_buffer_does_not_leak_between_calls():
    A, B = (with_spectrum(400, 300, hard_spectrum(100), seed=s).bfloat16() for s in (0, 1))
    first = top_svd(A, 2)
    top_svd(B, 2)  # converted into the same staging buffer
    again = top_svd(A, 2)
    assert torch.equal(first.U, again.U) and torch.equal(first.S, again.S) and torch.equal(first.V, again.V)
    torch.testing.assert_close(first.S, top_svd(A.float(), 2).S)  # same as the unstaged fp32 input


def test_cache_skips_the_work_the_second_time(tmp_path):
    W = with_spectrum(400, 300, hard_spectrum(100))
    first = cached_top_svd(W, 2, cache=tmp_path)
    second = cached_top_svd(W, 2, cache=tmp_path)
    assert first.method == "krylov" and second.method == "cache"
    assert torch.equal(first.U, second.U) and torch.equal(first.S, second.S) and torch.equal(first.V, second.V)
    assert cached_top_svd(W, 2, SvdSettings(method="exact"), cache=tmp_path).method == "exact"  # other key
    W2 = W.clone()
    W2[0, 0] += 1e-3
    assert cached_top_svd(W2, 2, cache=tmp_path).method == "krylov"
    assert len(list(tmp_path.glob("*.safetensors"))) == 3


def test_fingerprint_sees_every_byte_and_the_dtype():
    W = torch.randn(64, 32)
    W2 = W.clone()
    W2[63, 31] = torch.nextafter(W2[63, 31], torch.tensor(10.0))
    assert fingerprint(W) == fingerprint(W.clone()) != fingerprint(W2)
    assert fingerprint(W) != fingerprint(W.bfloat16()) and fingerprint(W) != fingerprint(W.view(32, 64))


def test_second_attach_reads_factors_from_the_cache(make_llama):
    from tinyeval.adapters import AdapterConfig, attach

    first = attach(make_llama(), AdapterConfig(params=14))
    second = attach(make_llama(), AdapterConfig(params=14))
    assert "cache" not in first.svd_info["methods"] and second.svd_info["methods"] == {"cache": 14}
    for a, b in zip(first.state.factors, second.state.factors):
        assert torch.equal(a.A, b.A) and torch.equal(a.B, b.B)


def test_compiled_products_match_torch_for_both_orientations():
    """svd_kernels' fused products (small CPU matrices, block 4) equal the GEMMs they replace, odd sizes too."""
    from tinyeval.adapters import svd_kernels

    g = torch.Generator().manual_seed(3)
    for m, n in ((101, 37), (100, 37), (300, 201), (577, 576)):
        W, X = torch.randn(m, n, generator=g), torch.randn(4, n, generator=g)
        P, Y = torch.empty(4, m), torch.empty(4, n)
        svd_kernels.tall4(W.numpy(), X.numpy(), P.numpy(), Y.numpy())
        torch.testing.assert_close(P, X @ W.T, rtol=1e-4, atol=1e-3)
        torch.testing.assert_close(Y, (X @ W.T) @ W, rtol=1e-4, atol=1e-2)
        V = W.T.contiguous()  # the same W seen as the transpose of a wide weight
        svd_kernels.wide4(V.numpy(), X.numpy(), P.numpy(), Y.numpy())
        torch.testing.assert_close(P, X @ W.T, rtol=1e-4, atol=1e-3)
        torch.testing.assert_close(Y, (X @ W.T) @ W, rtol=1e-4, atol=1e-2)


def test_compiled_and_gemm_paths_agree():
    """Block 4 (compiled products) and block 8 (GEMMs) find the same top-r triplets, tall and wide."""
    for shape in ((400, 150), (150, 400)):
        W = with_spectrum(*shape, hard_spectrum(140), seed=4)
        a, b = top_svd(W, 2), top_svd(W, 2, SvdSettings(block=8))
        exact = torch.linalg.svdvals(W)[:2]
        assert a.method == b.method == "krylov"
        assert ((a.S / exact - 1).abs() < 1e-3).all() and ((b.S / exact - 1).abs() < 1e-3).all()
        torch.testing.assert_close(a.U.abs(), b.U.abs(), atol=2e-2, rtol=0)


def test_compiled_gram_schmidt_and_normalisation():
    """project removes the basis' span and reports the first-pass coefficients; orthonormalize returns an
    orthonormal block spanning Y, and zeroes a row that is a combination of the others."""
    from tinyeval.adapters import svd_kernels

    g = torch.Generator().manual_seed(5)
    Q = torch.linalg.qr(torch.randn(301, 12, generator=g))[0].T.contiguous()  # (12, 301) orthonormal rows
    Y = torch.randn(4, 301, generator=g)
    C, Y0 = torch.zeros(20, 20), Y.clone()
    svd_kernels.project(Y.numpy(), Q.numpy(), C[3:7, :12].numpy())  # a strided view, as G's rows are
    torch.testing.assert_close(C[3:7, :12], Y0 @ Q.T, rtol=1e-5, atol=1e-5)
    assert (Y @ Q.T).abs().max() < 1e-5
    torch.testing.assert_close(Y, Y0 - (Y0 @ Q.T) @ Q, rtol=1e-4, atol=1e-4)
    out = torch.empty(4, 301)
    svd_kernels.orthonormalize(Y.numpy(), out.numpy())
    torch.testing.assert_close(out @ out.T, torch.eye(4), rtol=0, atol=1e-5)
    assert torch.linalg.matrix_rank(torch.cat([out, Y])) == 4  # same span
    Y[3] = 2 * Y[0] - Y[1]
    svd_kernels.orthonormalize(Y.numpy(), out.numpy())
    assert out[3].abs().max() == 0 and (out[:3] @ out[:3].T - torch.eye(3)).abs().max() < 1e-5
