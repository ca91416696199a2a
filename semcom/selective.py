"""Selective transmission: send only the BEV cells that matter, through an inner codec.

``encode(features [B, C, H, W], link, importance=None)``:

1. **Importance** ``[B, 1, H, W]`` per cell — a fusion's confidence map (Where2comm style), a
   learned map, or by default the L2 norm of each cell's feature vector.
2. **Selection**: the ``k`` most important cells of each map, ``k = max(1, round(keep_fraction ·
   H·W))``, or, with ``budget_channel_uses``, the largest ``k`` whose total cost (payload +
   selection map) fits the budget. Ties are broken by ``torch.topk``. The selected cells are
   taken in raster order (row-major, the order a bitmap implies).
3. **Packing**: their feature vectors form a dense ``[B, C, k]`` tensor, laid out as a
   ``[B, C, gh, gw]`` grid for the inner codec (``1 × k`` for codecs without a spatial factor;
   a near-square grid whose sides are multiples of the inner codec's ``factor`` for DeepJSCC;
   padding cells are zero).
4. **Inner codec**: any registered codec (``"deepjscc"``, ``"analog"``, ``"digital"``, …) or an
   instance; its symbols are what goes on air.

**The selection map is charged.** It is sent error-free as control information, coded with the
cheaper of a bitmap (``H·W`` bits) and index coding (``k · ceil(log2(H·W))`` bits). The control
channel is modelled as ``control_modulation_bits`` coded bits per complex use (2: QPSK) at code
rate ``control_code_rate`` (1/2), i.e. 1 information bit per channel use by default:

* ``control_bits = min(H·W, k · ceil(log2(H·W)))``
* ``control_coded_bits = ceil(control_bits / control_code_rate)``
* ``control_uses = ceil(control_coded_bits / control_modulation_bits)``

``Cost``: ``source_bits = inner.source_bits + control_bits``, ``coded_bits = inner.coded_bits +
control_coded_bits``, ``channel_uses = inner.channel_uses + control_uses``, ``packets =
inner.packets + packets_for_bits(control_coded_bits)`` (control travels in its own packets),
``raw_bits`` of the full ``[C, H, W]`` map.

``decode`` runs the inner decoder and scatters the cells back; unselected cells are 0.
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch

from v2x.channels.link import LinkState
from v2x.channels.packets import HEADER_BYTES, MTU_BYTES
from v2x.semcom.base import (
    CODECS,
    Codec,
    Cost,
    Transmission,
    check_features,
    packets_for_bits,
    raw_feature_bits,
)


def selection_map_bits(height: int, width: int, kept: int) -> int:
    """Bits of the selection map: ``min(H·W, kept · ceil(log2(H·W)))`` (bitmap or indices)."""
    cells = height * width
    index_bits = math.ceil(math.log2(cells)) if cells > 1 else 0
    return min(cells, kept * index_bits)


def default_importance(features: torch.Tensor) -> torch.Tensor:
    """``[B, 1, H, W]`` L2 norm of each cell's feature vector."""
    return features.to(torch.float32).square().sum(dim=1, keepdim=True).sqrt()


def select_cells(importance: torch.Tensor, kept: int) -> torch.Tensor:
    """``[B, kept]`` long raster indices (ascending) of the ``kept`` most important cells.

    Args:
        importance: ``[B, 1, H, W]`` (or ``[B, H, W]``) scores, larger is more important.
        kept: number of cells per map (1 ≤ kept ≤ H·W).
    """
    cells = math.prod(importance.shape[1:])
    scores = importance.reshape(importance.shape[0], cells).to(torch.float32)
    if not 0 <= kept <= scores.shape[1]:
        raise ValueError(f"select_cells: 'kept' must be in [0, {scores.shape[1]}], got {kept}")
    top = torch.topk(scores, kept, dim=1, sorted=False).indices
    return torch.sort(top, dim=1).values


def gather_cells(features: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """``features [B, C, H, W]``, ``indices [B, k]`` → ``[B, C, k]`` cell feature vectors."""
    b, c, h, w = features.shape
    flat = features.reshape(b, c, h * w)
    return flat.gather(2, indices[:, None, :].expand(b, c, indices.shape[1]))


def scatter_cells(
    cells: torch.Tensor, indices: torch.Tensor, height: int, width: int
) -> torch.Tensor:
    """``cells [B, C, k]`` back to ``[B, C, H, W]`` at ``indices [B, k]``; zeros elsewhere."""
    b, c, k = cells.shape
    out = torch.zeros(b, c, height * width, dtype=cells.dtype, device=cells.device)
    out = out.scatter(2, indices[:, None, :].expand(b, c, k), cells)
    return out.reshape(b, c, height, width)


@CODECS.register("selective")
class SelectiveCodec(Codec):
    """Top-k cell selection composed with an inner codec; the selection map is charged.

    Args:
        inner: registry name of the inner codec or a ``Codec`` instance.
        inner_kwargs: constructor arguments when ``inner`` is a name.
        keep_fraction: fraction of the ``H·W`` cells sent, in (0, 1].
        budget_channel_uses: if set, a per-map channel-use budget (payload + control) that
            decides ``k`` instead of ``keep_fraction``; needs an inner codec whose cost depends
            only on the shape (one with ``channel_uses_for(shape, ratio)``, e.g. deepjscc).
        control_modulation_bits, control_code_rate: control channel (see module doc).
        mtu_bytes, header_bytes: packets of the control information.
    """

    def __init__(
        self,
        inner: str | Codec = "deepjscc",
        inner_kwargs: dict | None = None,
        keep_fraction: float = 0.25,
        budget_channel_uses: int | None = None,
        control_modulation_bits: int = 2,
        control_code_rate: float = 0.5,
        mtu_bytes: int = MTU_BYTES,
        header_bytes: int = HEADER_BYTES,
    ) -> None:
        super().__init__()
        if isinstance(inner, str):
            from v2x.semcom import build_codec

            inner = build_codec(inner, **dict(inner_kwargs or {}))
        elif not isinstance(inner, Codec):
            raise ValueError(f"selective: 'inner' must be a codec name or Codec, got {type(inner)}")
        if not (0.0 < float(keep_fraction) <= 1.0):
            raise ValueError(f"selective: 'keep_fraction' must be in (0, 1], got {keep_fraction}")
        if budget_channel_uses is not None and int(budget_channel_uses) < 1:
            raise ValueError(
                f"selective: 'budget_channel_uses' must be a positive integer or null, got "
                f"{budget_channel_uses}"
            )
        if budget_channel_uses is not None and not inner.shape_only_cost:
            raise ValueError(
                "selective: 'budget_channel_uses' needs an inner codec with a shape-only cost "
                f"(channel_uses_for), {type(inner).__name__} has none; use 'keep_fraction'"
            )
        if control_modulation_bits < 1 or not (0.0 < control_code_rate <= 1.0):
            raise ValueError(
                "selective: need 'control_modulation_bits' ≥ 1 and 0 < 'control_code_rate' ≤ 1, "
                f"got {control_modulation_bits}, {control_code_rate}"
            )
        if inner.harq_max_rounds > 0:
            raise ValueError(
                f"selective: the inner codec {type(inner).__name__} has harq_max_rounds > 0, "
                "which is not supported (set harq_max_rounds=0 for the inner codec)"
            )
        self.inner = inner
        self.uses_channel = bool(inner.uses_channel)
        # the control bits are exact (bitmap or index list); the payload's are the inner codec's
        self.bits_estimated = bool(inner.bits_estimated)
        self.keep_fraction = float(keep_fraction)
        self.budget_channel_uses = None if budget_channel_uses is None else int(budget_channel_uses)
        self.control_modulation_bits = int(control_modulation_bits)
        self.control_code_rate = float(control_code_rate)
        self.mtu_bytes = int(mtu_bytes)
        self.header_bytes = int(header_bytes)
        self._budget_cache: dict[tuple[int, int, int], int] = {}

    # ----------------------------------------------------------------- sizes and costs
    def grid_shape(self, kept: int) -> tuple[int, int]:
        """Layout ``(gh, gw)`` of ``kept`` packed cells for the inner codec (``gh·gw ≥ kept``)."""
        factor = int(getattr(self.inner, "factor", 0) or 0)
        if factor <= 0:
            return 1, max(kept, 1)
        side = math.ceil(math.sqrt(max(kept, 1)))
        gh = factor * math.ceil(side / factor)
        gw = factor * math.ceil(math.ceil(max(kept, 1) / gh) / factor)
        return gh, gw

    def control_cost(self, height: int, width: int, kept: int) -> tuple[int, int, int]:
        """``(control_bits, control_coded_bits, control_uses)`` for one map."""
        bits = selection_map_bits(height, width, kept)
        coded = math.ceil(bits / self.control_code_rate - 1e-9)
        uses = math.ceil(coded / self.control_modulation_bits)
        return bits, coded, uses

    def cells_to_keep(self, shape: tuple[int, int, int]) -> int:
        """``k`` for one ``[C, H, W]`` map (keep_fraction rule or the channel-use budget)."""
        c, h, w = shape
        cells = h * w
        if self.budget_channel_uses is None:
            return min(cells, max(1, math.floor(self.keep_fraction * cells + 0.5)))
        if shape in self._budget_cache:
            return self._budget_cache[shape]
        ratio = getattr(self.inner, "bandwidth_ratio", None)
        best = 0
        for kept in range(cells, 0, -1):
            gh, gw = self.grid_shape(kept)
            total = (
                self.inner.channel_uses_for((c, gh, gw), ratio) + self.control_cost(h, w, kept)[2]
            )
            if total <= self.budget_channel_uses:
                best = kept
                break
        if best == 0:
            gh, gw = self.grid_shape(1)
            least = self.inner.channel_uses_for((c, gh, gw), ratio) + self.control_cost(h, w, 1)[2]
            raise ValueError(
                f"selective: 'budget_channel_uses' = {self.budget_channel_uses} cannot carry even "
                f"one cell of a {c}x{h}x{w} map (needs {least})"
            )
        self._budget_cache[shape] = best
        return best

    # ----------------------------------------------------------------- codec interface
    def _pack(self, features: torch.Tensor, importance: torch.Tensor | None):
        check_features(features)
        b, c, h, w = features.shape
        if importance is None:
            importance = default_importance(features)
        elif importance.shape not in ((b, 1, h, w), (b, h, w)):
            raise ValueError(
                f"selective: 'importance' must have shape [B, 1, H, W] = {(b, 1, h, w)}, got "
                f"{tuple(importance.shape)}"
            )
        kept = self.cells_to_keep((c, h, w))
        indices = select_cells(importance.to(features.device), kept)
        gh, gw = self.grid_shape(kept)
        cells = gather_cells(features, indices)
        grid = torch.nn.functional.pad(cells, (0, gh * gw - kept)).reshape(b, c, gh, gw)
        return grid, indices, kept

    def encode(
        self, features: torch.Tensor, link: LinkState, importance: torch.Tensor | None = None
    ) -> Transmission:
        """``features [B, C, H, W]`` → Transmission (inner symbols; costs include the map).

        Args:
            importance: ``[B, 1, H, W]`` per-cell scores, or ``None`` (feature L2 norm).
        """
        check_features(features)
        b, c, h, w = features.shape
        grid, indices, kept = self._pack(features, importance)
        inner_tx = self.inner.encode(grid, link)
        ctrl_bits, ctrl_coded, ctrl_uses = self.control_cost(h, w, kept)
        ic = inner_tx.cost
        like = ic.channel_uses
        cost = Cost(
            source_bits=ic.source_bits + ctrl_bits,
            coded_bits=ic.coded_bits + ctrl_coded,
            channel_uses=ic.channel_uses + ctrl_uses,
            packets=ic.packets
            + packets_for_bits(
                torch.full_like(like, float(ctrl_coded)), self.mtu_bytes, self.header_bytes
            ),
            raw_bits=raw_feature_bits(features),
        )
        selected = scatter_cells(torch.ones(b, 1, kept, device=features.device), indices, h, w) > 0
        meta = {
            "selected": selected,
            "inner": inner_tx,
            "indices": indices,
            "shape": (c, h, w),
            "kept": kept,
            "control_bits": ctrl_bits,
            "control_uses": ctrl_uses,
        }
        if "sent" in inner_tx.meta:  # the inner codec conveys only part of the packed grid
            meta["sent"] = ~selected | self._lift(inner_tx.meta["sent"], indices, kept, h, w)
        if "mcs" in inner_tx.meta:  # the inner digital chain's MCS (the ledger's column)
            meta["mcs"] = inner_tx.meta["mcs"]
        return Transmission(
            symbols=inner_tx.symbols,
            cost=cost,
            mask=inner_tx.mask,
            state=None,
            meta=meta,
            symbols_per_packet=inner_tx.symbols_per_packet,  # control packets are error-free
            coded_bits_per_use=inner_tx.coded_bits_per_use,  # (the symbols are the inner's)
        )

    def decode(self, received: Transmission, link: LinkState) -> torch.Tensor:
        """Inner decode, then scatter the cells back to ``[B, C, H, W]`` (zeros elsewhere).

        What the inner receiver learnt is lifted to the full map: ``meta["corrupt"]`` as is (the
        symbols are the inner codec's), and, when the inner codec reports ``meta["delivered"]``,
        ``meta["delivered"] [B, 1, H, W]``: a selected cell arrived when its packed cell did;
        unselected cells are known from the error-free selection map (their value is 0).
        ``meta["selected"] [B, 1, H, W]`` bool (set by ``encode``) marks the selected cells, and
        ``meta["sent"]``, when the inner codec has one, the cells whose values were conveyed."""
        inner_rx = replace(
            received.meta["inner"],
            symbols=received.symbols,
            state=received.state,
            mask=received.mask,
        )
        grid = self.inner.decode(inner_rx, link)
        c, h, w = received.meta["shape"]
        kept = received.meta["kept"]
        indices = received.meta["indices"].to(grid.device)
        cells = grid.reshape(grid.shape[0], c, grid.shape[2] * grid.shape[3])[:, :, :kept]
        selected = received.meta["selected"].to(grid.device)
        if "corrupt" in inner_rx.meta:
            received.meta["corrupt"] = inner_rx.meta["corrupt"]
        inner_delivered = inner_rx.meta.get("delivered")
        if inner_delivered is not None:
            got = self._lift(inner_delivered, indices, kept, h, w)
            received.meta["delivered"] = ~selected | got
        return scatter_cells(cells.to(torch.float32), indices, h, w)

    @staticmethod
    def _lift(
        mask: torch.Tensor, indices: torch.Tensor, kept: int, height: int, width: int
    ) -> torch.Tensor:
        """A packed-grid cell mask ``[B, 1, gh, gw]`` → ``[B, 1, H, W]`` bool at the selected
        cells (``indices [B, kept]``), False elsewhere."""
        b = mask.shape[0]
        if b == 0:
            return torch.zeros(0, 1, height, width, dtype=torch.bool, device=indices.device)
        got = mask.reshape(b, 1, -1)[:, :, :kept].to(indices.device, torch.float32)
        return scatter_cells(got, indices, height, width) > 0

    def forward_train(
        self,
        features: torch.Tensor,
        snr_db: torch.Tensor | float,
        importance: torch.Tensor | None = None,
        **inner_kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Differentiable path when the inner codec has ``forward_train`` (e.g. deepjscc).

        ``inner_kwargs`` go to ``inner.forward_train`` (``ratio``, ``channel``,
        ``erasure_prob``; ``ratio`` defaults to the inner codec's ``bandwidth_ratio``).

        Returns:
            reconstruction ``[B, C, H, W]`` (zeros at unselected cells) and channel uses ``[B]``
            float64 including the control channel.
        """
        if not self.inner.trainable:
            raise ValueError(f"selective: inner codec {type(self.inner).__name__} cannot train")
        b, c, h, w = features.shape
        grid, indices, kept = self._pack(features, importance)
        inner_kwargs.setdefault("ratio", getattr(self.inner, "bandwidth_ratio", None))
        out, uses = self.inner.forward_train(grid, snr_db, **inner_kwargs)
        cells = out.reshape(b, c, out.shape[2] * out.shape[3])[:, :, :kept]
        return scatter_cells(cells, indices, h, w), uses + self.control_cost(h, w, kept)[2]


__all__ = [
    "SelectiveCodec",
    "default_importance",
    "gather_cells",
    "scatter_cells",
    "select_cells",
    "selection_map_bits",
]
