"""The min-sum LDPC decoder's torch path (``v2x.semcom.ldpc_minsum``): one row group's
check-node update, the channel LLRs placed into the decoded variable nodes, and the syndrome
check, in torch (CPU and CUDA; the reference that the Triton path matches bit for bit).

``MinSumTorchPath`` is a part of ``LDPC5GMinSumDecoder``; shapes and units as there.
"""

from __future__ import annotations

import torch

from v2x.semcom.ldpc_minsum_graph import _FILLER_LLR, _PAD_LLR, _Group, _Tables


class MinSumTorchPath:
    """The torch path of ``LDPC5GMinSumDecoder`` (its ``_layer_torch``, ``_channel_llr_torch``,
    ``_syndrome_ok``)."""

    @staticmethod
    def _work(max_e: int, nb: int, device: torch.device) -> torch.Tensor:
        return torch.empty(3, max_e, nb, dtype=torch.float32, device=device)

    def _layer_torch(
        self, llr: torch.Tensor, g: _Group, state: list[torch.Tensor], work: torch.Tensor
    ) -> None:
        """One row group in torch: ``t = L − R``, check update, ``L = t + R_new`` (in place).

        ``state = [r_old [rows·degree·Z, B]]`` is overwritten with the new check-to-variable
        messages; ``work [3, ≥ rows·degree·Z, B]`` float32 is scratch space. Only float
        arithmetic and reductions (no bool masks, no arg-min), which are several times faster
        on CPU. With float16 storage the arithmetic is the same; ``α·s·min`` is rounded to
        float16 before it is used (the stored messages are exactly the messages used) and the
        new ``L`` is rounded when stored.
        """
        (r_old,) = state
        half = llr.dtype != torch.float32
        nb = llr.shape[1]
        e = r_old.shape[0]
        shape = (*g.shape, nb)
        if half:
            t = work[0, :e].view(shape)
            t.copy_(llr.index_select(0, g.idx).view(shape))
        else:
            t = torch.index_select(llr, 0, g.idx, out=work[0, :e]).view(shape)
        t -= r_old.view(shape)
        if g.pad is not None:
            t.view(e, nb).index_fill_(0, g.pad, _PAD_LLR)
        a = torch.abs(t, out=work[1, :e].view(shape))
        min1 = a.amin(dim=1, keepdim=True)
        at_min = torch.eq(a, min1, out=work[2, :e].view(shape))  # 1.0 on the minimum
        ties = at_min.sum(dim=1, keepdim=True)
        min2 = a.add_(at_min, alpha=_PAD_LLR).amin(dim=1, keepdim=True)  # smallest other |t|
        # A tied minimum: every edge's extrinsic minimum is min1 (exact: min1 + 0).
        min2 = torch.minimum(min2, min1 + (2.0 - ties).clamp_(0.0, 1.0) * _PAD_LLR)
        if self.beta:
            min1 = (min1 - self.beta).clamp_min_(0.0)
            min2 = (min2 - self.beta).clamp_min_(0.0)
        one = self._tables[t.device].one
        sgn = torch.copysign(one, t, out=a)  # ±1; +1 for +0 (Sionna's sign 0 = +1)
        scale = sgn.prod(dim=1, keepdim=True)  # product of the row's signs
        scale *= self.alpha
        # r = α · (product of the other signs = all signs · own sign) · (min2 on the minimum
        # edge, min1 elsewhere); lerp with weights 0/1 returns its end points exactly.
        if half:
            m1s, m2s = ((m * scale).to(llr.dtype).float() for m in (min1, min2))
            r = torch.lerp(m1s, m2s, at_min)
            r *= sgn
            r_old.view(shape).copy_(r)  # exact: ±(a float16 value)
            t += r
            llr.index_copy_(0, g.idx, t.view(e, nb).to(llr.dtype))
            return
        r = torch.lerp(min1 * scale, min2 * scale, at_min, out=r_old.view(shape))
        r *= sgn
        t += r
        llr.index_copy_(0, g.idx, t.view(e, nb))

    def _channel_llr_torch(
        self, x: torch.Tensor, rv: list[int] | None, llr: torch.Tensor, tab: _Tables
    ) -> None:
        """``llr [V + Z, B]`` from the channel logits ``x [B, n]`` (or ``[B, R, n]``, the
        received versions ``rv`` combined in the circular buffer): each VN's source row of
        ``[input columns (or buffer) | 0 | filler]``, negated, then the padding rows."""
        v, nb, device = self._num_vns, x.shape[0], x.device
        if rv is None:
            src = torch.empty(self.n + 2, nb, dtype=torch.float32, device=device)
            torch.clamp(x.t(), -self.llr_max, self.llr_max, out=src[: self.n])
            place = tab.place
        else:
            src = self._versions_in_buffer(x, rv, tab).t().contiguous()  # [buffer + 2, B]
            place = tab.place_buf
        src[-2] = 0.0
        src[-1] = -_FILLER_LLR
        torch.sub(0.0, src.index_select(0, place), out=llr[:v])  # 0 − (+0) = +0, never −0
        llr[v:] = _PAD_LLR

    @staticmethod
    def _syndrome_ok(llr: torch.Tensor, tab: _Tables, checks: int) -> tuple[torch.Tensor, None]:
        """``[B]`` bool: the hard decision of each batch column satisfies every check (and
        ``None``: no packed hard decisions, as ``_syndrome_words_triton`` returns).

        Hard bits are bytes, four blocks to an int32 lane group: the gather and the sum over a
        check's edges (at most its degree, < 256 per byte: no carry between blocks) move a
        quarter of the elements.
        """
        v, nb = tab.place.numel(), llr.shape[1]
        nb4 = -(-nb // 4) * 4
        hard = torch.zeros(v + 1, nb4, dtype=torch.uint8, device=llr.device)
        torch.le(llr[:v], 0.0, out=hard[:v, :nb].view(torch.bool))
        d = tab.syn_shape[1]
        idx = tab.syn_idx[: checks * d]
        packed = hard.view(torch.int32).index_select(0, idx).view(checks, d, nb4 // 4)
        parity = packed.sum(dim=1, dtype=torch.int32).bitwise_and_(0x01010101)
        return parity.view(torch.uint8).amax(dim=0)[:nb] == 0, None
