"""Property-based tests (hypothesis): every backend against the reference over
shapes, strides, memory formats, dtypes, lam, perm, boxes, smoothing and K,
plus the invariants of the math:

- soft-target rows sum to 1;
- lam = 1 is the identity (and lam = 0 takes the partner);
- in place on an involution equals out of place;
- mixing twice with an involution follows the algebra
  (uniform lam: x'' = (lam^2 + (1 - lam)^2) x + 2 lam (1 - lam) x[p]);
- CutMix label weights equal the box fractions, with the lam ``Mixup`` draws
  and corrects itself (timm's lam = 1 - area / (H * W));
- the gradient equals the written-out formula.

Examples are derandomised so that CI sees the same cases on every run; the
Triton interpreter gets fewer of them (it runs each program in Python).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import (
    assert_grad_matches,
    assert_matches,
    assert_targets_sum_to_one,
    bits,
    error_bound,
    max_ulps,
    poisoned_allocations,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mixup_fused as mf
from mixup_fused.reference import NO_BOX, mix_reference, weights

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
EXAMPLES = {"cpp": 200, "reference": 80, "triton": 40}


def run_property(backend, strategy, check, scale: float = 1.0):
    """Run ``check(case)`` over ``strategy`` with a per-backend example budget."""

    @settings(
        max_examples=max(5, int(EXAMPLES.get(backend, 20) * scale)),
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(case=strategy)
    def prop(case):
        check(case)

    prop()


# ----------------------------------------------------------------------------
# Strategies
# ----------------------------------------------------------------------------


class Case:
    """One set of arguments (a plain class: hypothesis prints its repr)."""

    def __init__(self, x, target, perm, lam, num_classes, label_smoothing, boxes, layout):
        self.x, self.target, self.perm, self.lam = x, target, perm, lam  # lam: float or tensor [B]
        self.num_classes, self.label_smoothing, self.boxes, self.layout = num_classes, label_smoothing, boxes, layout

    def kwargs(self):
        return dict(num_classes=self.num_classes, label_smoothing=self.label_smoothing, boxes=self.boxes)

    def lam_tensor(self) -> torch.Tensor:
        B = self.x.shape[0]
        if isinstance(self.lam, torch.Tensor):
            return self.lam
        return torch.full((B,), float(self.lam), dtype=torch.float64)

    def __repr__(self):  # what hypothesis prints for a failing example
        lam = self.lam.tolist() if isinstance(self.lam, torch.Tensor) else self.lam
        return (
            f"Case(x={self.x.dtype} {tuple(self.x.shape)} strides={self.x.stride()} layout={self.layout}, "
            f"target={self.target.dtype} {self.target.tolist() if self.target.dim() == 1 else self.target.shape}, "
            f"perm={self.perm.tolist()}, lam={lam}, K={self.num_classes}, eps={self.label_smoothing}, "
            f"boxes={None if self.boxes is None else self.boxes.tolist()})"
        )


def _values(shape, dtype, seed) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)


def _layout(base_shape, dtype, seed, layout):
    """A tensor of ``base_shape`` in the given layout (values depend on seed)."""
    if layout == "contiguous":
        return _values(base_shape, dtype, seed)
    if layout == "channels_last":
        return _values(base_shape, dtype, seed).contiguous(memory_format=torch.channels_last)
    if layout == "transposed":  # last two dims swapped: dense in no order, except [B, C, T]'s channels-last
        shape = base_shape[:-2] + (base_shape[-1], base_shape[-2])
        return _values(shape, dtype, seed).transpose(-1, -2)
    if layout == "sliced":  # every other element of the last dim
        shape = base_shape[:-1] + (2 * base_shape[-1],)
        return _values(shape, dtype, seed)[..., ::2]
    if layout == "batch_strided":  # every other sample: rows further apart
        shape = (2 * base_shape[0],) + base_shape[1:]
        return _values(shape, dtype, seed)[::2]
    raise AssertionError(layout)


@st.composite
def involutions(draw, B: int):
    order = draw(st.permutations(range(B)))
    npairs = draw(st.integers(0, B // 2))
    perm = list(range(B))
    for k in range(npairs):
        a, b = order[2 * k], order[2 * k + 1]
        perm[a], perm[b] = b, a
    return perm


@st.composite
def boxes_for(draw, B, H, W, allow_no_box=True):
    """Per row a box, or (one row in three) NO_BOX: a cut row then meets a
    blended partner in about half the pairs, forward, in place and backward."""
    rows = []
    for _ in range(B):
        if allow_no_box and draw(st.integers(0, 2)) == 0:
            rows.append(NO_BOX)
            continue
        y0, y1 = sorted(draw(st.tuples(st.integers(0, H), st.integers(0, H))))
        x0, x1 = sorted(draw(st.tuples(st.integers(0, W), st.integers(0, W))))
        rows.append((y0, y1, x0, x1))
    return torch.tensor(rows, dtype=torch.int64).view(B, 4)


unit_floats = st.floats(0.0, 1.0, allow_nan=False)


@st.composite
def lams(draw, B, uniform=None):
    """A Python float (edges likely) or a per-sample tensor."""
    if uniform is None:
        uniform = draw(st.booleans())
    edge = st.sampled_from([0.0, 1.0, 0.5])
    if uniform:
        return draw(st.one_of(edge, unit_floats))
    vals = draw(st.lists(st.one_of(edge, unit_floats), min_size=B, max_size=B))
    return torch.tensor(vals, dtype=draw(st.sampled_from([torch.float32, torch.float64])))


@st.composite
def mix_cases(
    draw,
    *,
    cutmix=None,
    involution=False,
    soft=None,
    uniform_lam=None,
    allow_no_box=True,
    dtypes=DTYPES,
    max_b=6,
    max_side=7,
):
    B = draw(st.integers(1, max_b))
    dtype = draw(st.sampled_from(dtypes))
    seed = draw(st.integers(0, 2**16))
    use_boxes = draw(st.booleans()) if cutmix is None else cutmix
    image = use_boxes or draw(st.booleans())
    if image:
        C, H, W = (draw(st.integers(1, max_side)) for _ in range(3))
        shape = (B, C, H, W)
        layouts = ["contiguous", "channels_last", "transposed", "sliced", "batch_strided"]
    else:
        shape = (B,) + tuple(draw(st.lists(st.integers(1, 2 * max_side), min_size=0, max_size=3)))
        layouts = ["contiguous", "batch_strided"] + (["transposed", "sliced"] if len(shape) >= 3 else [])
    layout = draw(st.sampled_from(layouts))
    x = _layout(shape, dtype, seed, layout)
    perm = draw(involutions(B)) if involution else draw(st.permutations(range(B)))
    perm = torch.tensor(perm, dtype=torch.int64)
    lam = draw(lams(B, uniform_lam))
    K = draw(st.integers(1, 40))
    eps = draw(st.one_of(st.just(0.0), unit_floats))
    use_soft = draw(st.booleans()) if soft is None else soft
    g = torch.Generator().manual_seed(seed + 1)
    if use_soft:
        tdt = draw(st.sampled_from([torch.float32, torch.float64, torch.bfloat16]))
        # Rows of c / 256 (integer c): they sum to exactly 1 even in bfloat16.
        counts = torch.multinomial(torch.rand(K, generator=g) + 0.1, 256, replacement=True, generator=g)
        rows = [torch.bincount(counts.roll(k), minlength=K) for k in range(B)]  # different rows, same sums
        target = (torch.stack(rows).double() / 256).to(tdt)
    else:
        target = torch.randint(0, K, (B,), generator=g)
    boxes = draw(boxes_for(B, shape[2], shape[3], allow_no_box)) if use_boxes else None
    return Case(x, target, perm, lam, K, eps, boxes, layout)


def _call(case: Case, backend: str, *, inplace=False, x=None, lam=None, target=None, eps=None):
    x = case.x if x is None else x
    with poisoned_allocations():
        return mf.mix(
            x,
            case.target if target is None else target,
            case.perm,
            case.lam if lam is None else lam,
            num_classes=case.num_classes,
            label_smoothing=case.label_smoothing if eps is None else eps,
            boxes=case.boxes,
            inplace=inplace,
            backend=backend,
        )


def _same_layout_copy(x: torch.Tensor) -> torch.Tensor:
    """A copy with the same strides, dense or not (clone() densifies slices)."""
    return torch.empty_strided(x.size(), x.stride(), dtype=x.dtype).copy_(x)


# ----------------------------------------------------------------------------
# Every backend against the reference
# ----------------------------------------------------------------------------


def test_matches_reference(backend):
    def check(case: Case):
        x_before = case.x.clone()
        out, y = _call(case, backend)
        want_x, want_y = mix_reference(case.x, case.target, case.perm, case.lam_tensor(), **case.kwargs())
        assert_matches(out, want_x, what=f"{backend} images", backend=backend)
        assert_matches(y, want_y, what=f"{backend} targets", backend=backend)
        assert torch.equal(bits(case.x), bits(x_before)), "out of place changed x"
        if case.layout == "channels_last":
            assert out.is_contiguous(memory_format=torch.channels_last), "the output lost channels_last"
        elif case.layout == "transposed" and case.x.dim() == 3 and not case.x.is_contiguous():
            # [B, C, T] with its last two dims swapped is [B, C, T] channels-last (strides (C*T, 1, C)),
            # a dense layout the output keeps.
            assert out.permute(0, 2, 1).is_contiguous(), f"output strides {out.stride()}: lost the 1-D channels-last"
        else:
            assert out.is_contiguous(), f"output strides {out.stride()} for a {case.layout} input"

    run_property(backend, mix_cases(), check, scale=1.5)


@st.composite
def long_row_cases(draw):
    """Rows longer than the C++ kernel's work unit (32768 elements), so that
    rows split into several units: flat rows near multiples of the unit, and
    CutMix / channels_last images with more lines than one unit holds."""
    case = draw(mix_cases(max_b=3, dtypes=[torch.float32, torch.bfloat16]))
    B, dtype, seed = case.x.shape[0], case.x.dtype, draw(st.integers(0, 2**16))
    if draw(st.booleans()):
        n = 32768 * draw(st.integers(1, 3)) + draw(st.integers(-3, 3))
        case.x, case.boxes, case.layout = _layout((B, n), dtype, seed, "contiguous"), None, "contiguous"
    else:
        C, H, W = draw(st.integers(1, 3)), draw(st.integers(2000, 4000)), draw(st.integers(5, 17))
        case.layout = draw(st.sampled_from(["contiguous", "channels_last"]))
        case.x = _layout((B, C, H, W), dtype, seed, case.layout)
        case.boxes = draw(boxes_for(B, H, W))
    return case


@pytest.mark.skipif(not mf.HAS_CPP, reason="needs the C++ extension")
@pytest.mark.parametrize("backend", ["cpp"])  # the C++ work units are the point; too slow for the interpreter
def test_matches_reference_long_rows(backend):

    def check(case: Case):
        out, y = _call(case, backend)
        want_x, want_y = mix_reference(case.x, case.target, case.perm, case.lam_tensor(), **case.kwargs())
        assert_matches(out, want_x, what=f"{backend} images", backend=backend)
        assert_matches(y, want_y, what=f"{backend} targets", backend=backend)
        if bool((case.perm[case.perm] == torch.arange(len(case.perm))).all()):
            x = _same_layout_copy(case.x)
            _call(case, backend, inplace=True, x=x)
            assert torch.equal(bits(x), bits(out)), "in place differs from out of place"

    run_property(backend, long_row_cases(), check, scale=0.1)


# ----------------------------------------------------------------------------
# Invariants
# ----------------------------------------------------------------------------


def test_soft_target_rows_sum_to_one(backend):
    def check(case: Case):
        _, y = _call(case, backend)
        assert_targets_sum_to_one(y, case.target, case.perm)
        assert bool((y >= 0).all()), "negative target weight"

    run_property(backend, mix_cases(), check, scale=0.5)


def _smoothed(target, K, eps) -> torch.Tensor:
    """s(t) built by hand in float32: on = 1 - eps + eps / K, off = eps / K."""
    off = torch.tensor(eps / K, dtype=torch.float32)
    if target.dim() == 1:
        s = torch.full((target.shape[0], K), float(off), dtype=torch.float32)
        return s.scatter_(1, target.view(-1, 1), float(torch.tensor(1.0 - eps + eps / K, dtype=torch.float32)))
    return target.float() * torch.tensor(1.0 - eps, dtype=torch.float32) + off


@pytest.mark.parametrize("lam", [1.0, 0.0])
def test_lam_one_is_identity_and_zero_takes_the_partner(backend, lam):
    """lam = 1: x and s(t) come back bit for bit; lam = 0: x[perm], s(t[perm]).
    Boxes are all NO_BOX or empty (with boxes, lam only weights the targets)."""

    @st.composite
    def cases(draw):
        case = draw(mix_cases(allow_no_box=True))
        if case.boxes is not None:
            empty = torch.tensor([0, 0, 0, 0])
            case.boxes[:] = torch.where(case.boxes == -1, case.boxes, empty) if lam == 1.0 else -1
        case.lam = lam if draw(st.booleans()) else torch.full((case.x.shape[0],), lam)
        return case

    def check(case: Case):
        out, y = _call(case, backend)
        s = _smoothed(case.target, case.num_classes, case.label_smoothing)
        if lam == 1.0:
            assert torch.equal(bits(out), bits(case.x)), "lam = 1 changed the images"
            assert torch.equal(y, s), "lam = 1 changed the targets"
        else:
            assert torch.equal(bits(out), bits(case.x[case.perm])), "lam = 0 is not x[perm]"
            assert torch.equal(y, s[case.perm]), "lam = 0 targets are not s(t[perm])"

    run_property(backend, cases(), check, scale=0.5)


def test_inplace_on_involution_equals_out_of_place(backend):
    def check(case: Case):
        out, y = _call(case, backend)
        x = _same_layout_copy(case.x)
        res, y2 = _call(case, backend, inplace=True, x=x)
        assert res is x, "inplace=True did not return x itself"
        assert torch.equal(bits(x), bits(out)), "in place differs from out of place"
        assert torch.equal(y2, y), "in-place targets differ from out-of-place targets"

    run_property(backend, mix_cases(involution=True), check)


def test_mixing_twice_follows_the_algebra(backend):
    """With an involution p and per-sample lam (l, r = 1 - l), twice:
    x''[i] = (l_i^2 + r_i r_p) x_i + (l_i r_i + r_i l_p) x_p, which for a
    uniform lam is (lam^2 + (1 - lam)^2) x + 2 lam (1 - lam) x[p]; the targets
    (fed back as soft targets, no smoothing the second time) follow the same
    weights. Also in place."""

    def check(case: Case):
        inplace = case.layout == "contiguous"  # once in place, once out of place
        x1, y1 = _call(case, backend)
        if inplace:
            x2 = x1.clone()
            y2 = _call(case, backend, x=x2, target=y1, eps=0.0, inplace=True)[1]
        else:
            x2, y2 = _call(case, backend, x=x1, target=y1, eps=0.0)
        wdt = torch.float64 if case.x.dtype == torch.float64 else torch.float32
        # The weights as the kernels see them: lam and 1 - lam, each rounded once from the lam given.
        lam, rem = (w.double() for w in weights(case.lam_tensor(), wdt))
        p = case.perm
        a = lam * lam + rem * rem[p]
        b = lam * rem + rem * lam[p]
        view = (-1,) + (1,) * (case.x.dim() - 1)
        xd = case.x.double()
        want = a.view(view) * xd + b.view(view) * xd[p]
        # Each mix: three roundings in the compute dtype and one on store, of
        # terms no larger than l |u_i| + r |u_p|; the second also carries the
        # first's errors, weighted by l and r. The float64 evaluation of
        # `want` adds its own six roundings.
        ls, rs = lam.view(view), rem.view(view)
        m1 = ls * xd.abs() + rs * xd[p].abs()
        faithful = max_ulps(case.x.dtype, backend) > 0
        e1 = error_bound(m1, 3, wdt, case.x.dtype, faithful)
        x1d = x1.double()
        m2 = ls * x1d.abs() + rs * x1d[p].abs()
        tol = error_bound(m2, 3, wdt, case.x.dtype, faithful) + ls * e1 + rs * e1[p]
        tol = tol + error_bound(a.view(view).abs() * xd.abs() + b.view(view).abs() * xd[p].abs(), 6, torch.float64)
        err = (x2.double() - want).abs()
        assert bool((err <= tol).all()), f"x'' off the algebra by {float((err - tol).max())} (worst)"
        s = _smoothed(case.target, case.num_classes, case.label_smoothing).double()
        want_y = a.view(-1, 1) * s + b.view(-1, 1) * s[p]
        # Targets: the smoothed values (rounded once for class ids, three
        # times for soft rows) and two float32 mixes of magnitude <= want_y
        # (the soft row fed back is within that of the first mix).
        s_err = error_bound(s, 3 if case.target.dim() == 2 else 1, torch.float32)
        y_tol = error_bound(want_y, 7, torch.float32) + a.view(-1, 1) * s_err + b.view(-1, 1) * s_err[p]
        y_err = (y2.double() - want_y).abs()
        assert bool((y_err <= y_tol).all()), f"targets mixed twice off the algebra by {float((y_err - y_tol).max())}"

    run_property(backend, mix_cases(cutmix=False, involution=True), check)


def test_cutmix_twice_with_an_involution(backend):
    """CutMix twice with an involution and the same boxes: x''[i] is x[p]
    on box_i minus box_p and x[i] everywhere else, bit for bit; a box shared
    by each pair therefore restores the batch."""

    @st.composite
    def cases(draw):
        case = draw(mix_cases(cutmix=True, involution=True, allow_no_box=False))
        if draw(st.booleans()):  # pairs share a box: mixing twice is the identity
            case.boxes = case.boxes[torch.minimum(torch.arange(len(case.perm)), case.perm)]
        return case

    def check(case: Case):
        x1, _ = _call(case, backend)
        x2, _ = _call(case, backend, x=x1)
        H, W = case.x.shape[2], case.x.shape[3]
        ys, xs = torch.arange(H).view(1, H, 1), torch.arange(W).view(1, 1, W)
        b = case.boxes
        inside = (ys >= b[:, 0, None, None]) & (ys < b[:, 1, None, None])
        inside = inside & (xs >= b[:, 2, None, None]) & (xs < b[:, 3, None, None])
        take_partner = (inside & ~inside[case.perm]).unsqueeze(1)
        want = torch.where(take_partner, case.x[case.perm], case.x)
        assert torch.equal(bits(x2), bits(want)), "CutMix twice does not follow the box algebra"

    run_property(backend, cases(), check, scale=0.5)


def test_backward_matches_reference(backend):
    """The gradient with respect to x of every case (cut, blended, lam == 1,
    self-paired rows, any layout and dtype) against the written-out formula,
    on poisoned outputs."""

    def check(case: Case):
        x = _same_layout_copy(case.x).requires_grad_()
        with poisoned_allocations():
            out, _ = mf.mix(x, case.target, case.perm, case.lam, backend=backend, **case.kwargs())
            g = _values(tuple(out.shape), out.dtype, case.x.shape[0] + 7)
            (gx,) = torch.autograd.grad(out, x, g)
        assert_grad_matches(gx, g, case.perm, case.lam_tensor(), case.boxes, backend=backend)

    run_property(backend, mix_cases(), check, scale=0.5)


@st.composite
def sampled_cutmix(draw):
    """A Mixup that only cuts (timm's or the torch sampler, per batch, pair or
    sample, some samples left unmixed by prob) on a batch whose sample i holds
    the value i + 1 everywhere."""
    B = draw(st.integers(2, 7))
    C, H, W = draw(st.integers(1, 3)), draw(st.integers(2, 9)), draw(st.integers(2, 9))
    kw = dict(
        mixup_alpha=0.0,
        cutmix_alpha=draw(st.sampled_from([0.5, 1.0, 2.0])),
        prob=draw(st.sampled_from([1.0, 0.7])),
        mode=draw(st.sampled_from(["batch", "pair", "elem"])),
        label_smoothing=draw(st.sampled_from([0.0, 0.1])),
        num_classes=draw(st.integers(B, B + 5)),
        pairing=draw(st.sampled_from(["flip", "random"])),
    )
    if draw(st.booleans()):
        kw["cutmix_minmax"] = (0.2, 0.8)
    seed = draw(st.integers(0, 2**16))
    use_torch = draw(st.booleans())
    return (B, C, H, W), kw, seed, use_torch


def test_cutmix_label_weights_equal_box_fractions(backend):
    """End to end, with the lam the library draws and corrects itself
    (``Mixup``, timm's ``correct_lam``): the share of sample i's pixels that
    hold its partner's value is its partner's label weight, and the rest its
    own, within the roundings of a target (lam to float32, the smoothed
    values, the mix: five of magnitude <= 1)."""

    def check(case):
        (B, C, H, W), kw, seed, use_torch = case
        if use_torch:
            m = mf.Mixup(**kw, backend=backend, generator=torch.Generator().manual_seed(seed))
        else:
            np.random.seed(seed)
            m = mf.Mixup(**kw, backend=backend)
        x = torch.arange(1, B + 1, dtype=torch.float32).view(B, 1, 1, 1).expand(B, C, H, W).contiguous()
        with poisoned_allocations():
            out, y = m(x, torch.arange(B))
        K, eps = kw["num_classes"], kw["label_smoothing"]
        tol = float(error_bound(torch.tensor(1.0), 5, torch.float32))
        for i in range(B):
            partner = [p for p in range(B) if p != i and bool((out[i] == p + 1).any())]
            assert len(partner) <= 1, f"sample {i} holds pixels of several samples"
            own = int((out[i] == i + 1).sum())
            moved = C * H * W - own
            frac = moved / (C * H * W)
            if partner:
                p = partner[0]
                assert int((out[i] == p + 1).sum()) == moved, "pixels from neither the sample nor its partner"
                assert abs(float(y[i, p]) - ((1 - eps) * frac + eps / K)) <= tol, "partner label weight != box fraction"
            else:
                assert moved == 0
            want_own = (1 - eps) * (1 - frac) + eps / K
            assert abs(float(y[i, i]) - want_own) <= tol, f"sample {i}: own label weight {float(y[i, i])} != {want_own}"
            assert abs(float(y[i].sum()) - 1) <= tol * K, "the label weights do not sum to one"

    run_property(backend, sampled_cutmix(), check, scale=0.5)
