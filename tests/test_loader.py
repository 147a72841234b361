"""PrefetchLoader: batches moved to the device, normalised and mixed there."""

from __future__ import annotations

import pytest
import torch
from conftest import IMAGENET_MEAN as MEAN
from conftest import IMAGENET_STD as STD

import mixup_fused as mf
from mixup_fused.loader import PrefetchLoader
from mixup_fused.reference import normalize_reference


def test_prefetch_loader_cpu_normalises_and_mixes():
    g = torch.Generator().manual_seed(2)
    batches = [(torch.randint(0, 256, (4, 3, 6, 6), dtype=torch.uint8, generator=g), torch.arange(4)) for _ in range(3)]
    m = mf.Mixup(
        num_classes=4, mean=MEAN, std=STD, out_dtype=torch.bfloat16, generator=torch.Generator().manual_seed(1)
    )
    ref_m = mf.Mixup(num_classes=4, mean=MEAN, std=STD, out_dtype=torch.bfloat16,
                     generator=torch.Generator().manual_seed(1))  # fmt: skip
    out = list(PrefetchLoader(batches, m, device="cpu", channels_last=True))
    assert len(out) == 3
    for (x, y), (xb, tb) in zip(out, batches, strict=True):
        rx, ry = ref_m(xb.contiguous(memory_format=torch.channels_last), tb)
        assert x.dtype == torch.bfloat16 and torch.equal(x, rx) and torch.equal(y, ry)
        assert x.is_contiguous(memory_format=torch.channels_last)
    plain = list(PrefetchLoader(batches, device="cpu", mean=MEAN, std=STD))
    ref = normalize_reference(batches[0][0], torch.tensor(MEAN), torch.tensor(STD))
    assert torch.allclose(plain[0][0], ref)


# ----------------------------------------------------------------------------
# Stream order on CUDA. Without a GPU the CUDA stream calls are replaced by
# fakes that log what happens, in order; on a GPU the consumer writes into
# each batch while the next one is copied and mixed.
# ----------------------------------------------------------------------------


class _Stream:
    def __init__(self, name, log):
        self.name, self.log = name, log

    def wait_stream(self, other):
        self.log.append(("wait", self.name, other.name))


def test_prefetch_loader_stream_order(monkeypatch):
    """The side stream waits for the consumer's before each copy; the consumer's
    waits for the side stream before it gets a batch; every tensor of the batch
    (nested ones included: the draws of ``return_params=True``) is recorded on
    the consumer's stream."""
    log = []
    main, side = _Stream("main", log), _Stream("side", log)
    where = [main]

    class _Context:
        def __init__(self, s):
            self.s = s

        def __enter__(self):
            where.append(self.s)

        def __exit__(self, *exc):
            where.pop()

    monkeypatch.setattr(torch.cuda, "Stream", lambda device=None: side)
    monkeypatch.setattr(torch.cuda, "stream", _Context)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: where[-1])
    monkeypatch.setattr(torch.Tensor, "record_stream", lambda t, s: log.append(("record", tuple(t.shape), s.name)))

    m = mf.Mixup(num_classes=4, generator=torch.Generator().manual_seed(0), return_params=True)
    loader = PrefetchLoader([(torch.rand(4, 3, 2, 2), torch.arange(4))] * 2, m, device="cuda")

    def to_device(x, t):  # the copy itself, logged with the stream it is queued on
        log.append(("copy", where[-1].name))
        return x, t

    monkeypatch.setattr(loader, "_to_device", to_device)
    for x, _y, _params in loader:
        log.append(("consume", tuple(x.shape)))
    # x, y, then the draws: perm, the pairing's two halves, lam
    batch_tensors = [("record", s, "main") for s in [(4, 3, 2, 2), (4, 4), (4,), (2,), (2,), (4,)]]
    one = [("wait", "side", "main"), ("copy", "side"), ("wait", "main", "side"), *batch_tensors]
    assert log == one + one[:2] + [("consume", (4, 3, 2, 2))] + one[2:] + [("consume", (4, 3, 2, 2))]


@pytest.mark.gpu
def test_prefetch_loader_consumer_writes_while_the_next_batch_is_copied():
    """A consumer that overwrites each batch in place on its own stream (a slow
    kernel queued first) never changes the batches that follow."""
    g = torch.Generator().manual_seed(3)
    batches = [
        (torch.randint(0, 256, (8, 3, 64, 64), dtype=torch.uint8, generator=g), torch.arange(8)) for _ in range(4)
    ]
    want = [(x.to("cuda").float(), t) for x, t in batches]
    for (x, t), (wx, _) in zip(PrefetchLoader(batches, device="cuda", out_dtype=torch.float32), want, strict=True):
        assert torch.equal(x, wx) and torch.equal(t.cpu(), torch.arange(8))
        torch.cuda._sleep(10_000_000)  # keeps the consumer's stream busy while the next batch is copied
        x.fill_(-1.0)
    torch.cuda.synchronize()
