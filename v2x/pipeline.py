"""One cooperative frame end to end, batched over channel conditions.

    CoopBatch ─► encode (once per frame) ─► codec.encode ─► channel ─► codec.decode ─► warp ─►
    fuse ─► head ─► NMS ─► Detections            (cost of every link recorded for the ledger)

A call to ``CooperativePipeline.run`` evaluates ``K`` SNR conditions of one (codec, channel,
fusion) setting on ``B`` frames with a single forward of the encoders: the collaborators'
feature maps are replicated ``K`` times and pushed through the codec and the channel as one
batch of ``K·B·(A−1)`` transmissions. Conditions whose decoded maps (and arrival masks) come out
bitwise equal — an error-free codec such as ``identity``, a digital link above its cliff, maps
of which nothing arrived — then share one warp + fusion + head + NMS; without pose noise the
warp grid is computed once per frame. Results are the same as running each condition alone.
The warp + fusion + head is the one training runs too (``v2x.perception.ego_fusion``).

The path a frame takes follows the fusion's declared ``stage`` and capabilities
(``v2x.perception.fusion_base.FeatureFusion``): feature maps (here; ``selects_cells``: only the
most confident cells, through the ``selective`` codec), a semantic payload (``sends_payload``:
``v2x.pipeline_payload``), boxes (late; ``compensates_latency``: moved on by their motion) or
points (early), the last two charged as ideal digital links (``v2x.pipeline_boxes``).

Every link's ``LinkCost`` holds what it cost (the codec's ``Cost``) and what happened to it on the
air as the receiver knew it: packets erased or failed CRC (``v2x.semcom.base.reception``), and
the cells the transmitter conveyed and those that arrived and went to fusion (the mask fusion
gets). A packet-aware channel (erasure) is handed the codec's packet layout, so that it loses
the packets the codec counted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from v2x.channels.base import Channel
from v2x.common import to_device_async
from v2x.condition_streams import send, send_cells
from v2x.conditions import (  # noqa: F401 - a run's outputs, also reachable from here
    COST_FIELDS,
    RECEPTION_FIELDS,
    LinkCost,
    RunOutput,
    condition_snr,
    ideal_digital_uses,
    link_snr,
    repeat_detections,
    tiled_run,
)
from v2x.conditions import distinct_conditions as _distinct_conditions
from v2x.datasets.frame import CoopBatch
from v2x.perception.detector import CoopDetector, Detections
from v2x.perception.ego_fusion import arrived_cells, fuse_at_ego
from v2x.perception.fusion_base import FeatureFusion, collaborator_rows, own_map
from v2x.perception.warp import (
    box_flow,
    compose_sampling,
    perturb_poses,
    relative_level_transforms,
    warp_sampling_grid,
)
from v2x.pipeline_boxes import (  # noqa: F401 - the message sizes, also reachable from here
    BOX_MESSAGE_BITS,
    POINT_MESSAGE_BITS,
    MotionHistory,
    boxes_in_ego_frame,
    run_early,
    run_late,
)
from v2x.pipeline_payload import run_payload
from v2x.semcom.base import Codec
from v2x.semcom.selective import SelectiveCodec


class CooperativePipeline(nn.Module):
    """Ties a detector, a fusion strategy, a codec and a channel together.

    Args:
        model: the detector (encoder + head).
        fusion: a strategy from ``v2x.perception.fusion.FUSIONS``; the path a frame takes
            follows its declared capabilities (``stage``, ``sends_payload``, ``selects_cells``,
            ``compensates_latency``: ``v2x.perception.fusion_base.FeatureFusion``).
        codec: a codec from ``v2x.semcom.CODECS`` (used by feature-stage fusion).
        channel: a channel from ``v2x.channels.CHANNELS``.
        pose_noise_m, pose_noise_yaw_rad: localisation error applied to collaborators.
        seed: seeds the pose noise (channel noise follows torch's global RNG).
    """

    def __init__(
        self,
        model: CoopDetector,
        fusion: FeatureFusion,
        codec: Codec,
        channel: Channel,
        pose_noise_m: float = 0.0,
        pose_noise_yaw_rad: float = 0.0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if not isinstance(fusion, FeatureFusion):
            raise ValueError(
                f"pipeline: 'fusion' must be a fusion strategy (a v2x.perception.fusion."
                f"FeatureFusion, which declares its capabilities), got {type(fusion).__name__}"
            )
        self.model, self.fusion, self.codec, self.channel = model, fusion, codec, channel
        self.pose_noise_m, self.pose_noise_yaw_rad = pose_noise_m, pose_noise_yaw_rad
        self.generator = torch.Generator().manual_seed(seed)

    # ------------------------------------------------------------------ helpers
    def _noisy_relative(
        self, poses: torch.Tensor, seeds: Sequence[int] | None = None
    ) -> torch.Tensor:
        """``poses [N, A, 4, 4]`` with pose noise, relative to the ego. ``seeds [K]``: the
        ``N = K·B`` poses are ``K`` condition blocks, block ``k`` drawn after seeding the
        generator with ``seeds[k]`` (as its own run would be)."""
        if seeds is None:
            noisy = perturb_poses(poses, self.pose_noise_m, self.pose_noise_yaw_rad, self.generator)
            return relative_level_transforms(noisy)
        blocks = []
        for seed, block in zip(seeds, poses.chunk(len(seeds))):
            self.generator.manual_seed(int(seed))
            blocks.append(
                perturb_poses(block, self.pose_noise_m, self.pose_noise_yaw_rad, self.generator)
            )
        return relative_level_transforms(torch.cat(blocks))

    def runs_seeded_conditions(self) -> bool:
        """True when ``run(..., seeds=...)`` evaluates ``K`` seeded conditions in one call with
        the numbers of ``K`` calls, each after ``seed_run(seeds[k])``: feature fusion, whose
        draws are the codec's and channel's (run per condition, ``v2x.condition_streams``) and
        the pose noise (drawn per condition)."""
        return self.fusion.stage == "features" and not self.fusion.sends_payload

    # ------------------------------------------------------------------ stages
    @torch.no_grad()
    def run(
        self,
        batch: CoopBatch,
        snr_db: torch.Tensor,
        motion: MotionHistory | None = None,
        seeds: Sequence[int] | None = None,
    ) -> RunOutput:
        """Evaluate ``K`` channel conditions on ``batch``.

        Args:
            snr_db: ``[K]`` (every link of condition k at ``snr_db[k]``) or ``[K, B, A]`` (one
                SNR per link, e.g. from geometry; the ego's and padded slots are ignored and may
                be NaN).
            motion: the collaborators' previous scans and the ages of their data, for a
                box-stage fusion that compensates latency (``extrapolate``); ignored otherwise.
            seeds: ``[K]``: condition ``k`` gets the numbers of its own call after
                ``v2x.execution.seed_run(pipe, seeds[k])`` (its channel and pose noise drawn
                from that seed); needs ``runs_seeded_conditions()``. ``None``: one draw for all
                ``K`` from the current RNG state.
        """
        snr_db = condition_snr(snr_db, batch.agent_mask)
        if seeds is not None:
            if not self.runs_seeded_conditions():
                raise ValueError(
                    "pipeline: 'seeds' needs feature fusion (fusion "
                    f"{type(self.fusion).__name__}); run each seeded condition in its own call "
                    "(v2x.execution.run_conditions)"
                )
            if len(seeds) != snr_db.shape[0]:
                raise ValueError(
                    f"pipeline: 'seeds' needs one seed per condition ({snr_db.shape[0]}), "
                    f"got {len(seeds)}"
                )
        stage = self.fusion.stage
        if stage == "points":
            return run_early(self, batch, snr_db)
        # the maps in the encoder's own dtype (float16 / bfloat16 at a reduced precision):
        # the feature path reads them exactly as their float32 copies (_run_features)
        features = self._encode(batch)
        if stage == "boxes":  # (each agent's head alone reads them: its autocast's dtype)
            return run_late(self, batch, features, snr_db, motion)
        if self.fusion.sends_payload:  # semantic payloads (v2x.perception.semantic)
            return run_payload(self, batch, features.float(), snr_db)
        return self._run_features(batch, features, snr_db, stage == "features", seeds, motion)

    def _encode(self, batch: CoopBatch) -> torch.Tensor:
        """``[B, A, C, h, w]`` maps of ``batch`` in the encoder's dtype (``encoded_dtype``)."""
        return self.model.encode(batch.points, batch.point_mask, batch.poses, float_output=False)

    @torch.no_grad()
    def ego_detections(self, batch: CoopBatch) -> Detections:
        """``[B]`` rows of detections from the ego's own maps alone: what a feature fusion
        gives when no collaborator's map is fused (every shipped fusion then returns the ego's
        map, NaN and ±inf zeroed; tested against the full path). Draws no random numbers."""
        if not self.runs_seeded_conditions():
            raise ValueError(
                f"pipeline: ego_detections needs feature fusion (fusion "
                f"{type(self.fusion).__name__})"
            )
        return self._ego_alone(batch, lambda: self._encode(batch))

    def _ego_alone(self, batch: CoopBatch, features: Callable[[], torch.Tensor]) -> Detections:
        """The ego-alone detections of ``batch`` (``features()``: its ``[B, A, C, h, w]`` maps);
        a sweep's detector (``EncodeCache``) keeps them per frame batch and fusion key."""
        shared = getattr(self.model, "shared_ego_detections", None)
        key = self.fusion.ego_alone_key()
        if shared is None or key is None:
            return self._ego_alone_run(features())
        return shared(batch.points, key, lambda: self._ego_alone_run(features()))

    def _ego_alone_run(self, features: torch.Tensor) -> Detections:
        if self.fusion.returns_own_map_alone:  # one computation for every such fusion
            # (in the encoder's dtype: the head's autocast reads float32 maps rounded to it,
            # the same values)
            fused = own_map(features)
        else:
            b, _, _, h, w = features.shape
            ego_only = torch.ones(b, 1, 1, h, w, dtype=torch.bool, device=features.device)
            fused = self.fusion(features[:, :1].float(), ego_only)
        heat, reg = self.model.head(fused)
        return self.model.postprocess(heat, reg)

    def _run_features(
        self,
        batch: CoopBatch,
        features: torch.Tensor,
        snr_db: torch.Tensor,
        share: bool,
        seeds: Sequence[int] | None = None,
        motion: MotionHistory | None = None,
    ) -> RunOutput:
        """A feature fusion's run on ``features [B, A, C, h, w]``, float32 or the encoder's
        reduced dtype: every reader takes them as their float32 copies would be taken (the
        codecs get float32 rows, ``collaborator_rows``, or the maps as they are where they
        read them so, ``Codec.reads_reduced_maps``; the fusion kernel reads the ego's map
        into float32; the torch fusions get it as float32, ``fuse_at_ego``; the ego-alone
        head's autocast reads it in that dtype anyway)."""
        b, a, c, h, w = features.shape
        k = snr_db.shape[0]
        device = features.device
        cost = LinkCost.zeros(k, b, a, snr_db, device)
        if not share or a == 1:
            # Nothing is sent: one fusion of the ego's own map serves every condition.
            ego = self._ego_alone(batch, lambda: features)
            return tiled_run(ego, cost, k)
        # the collaborators' maps once, as K condition blocks of the same rows (not K copies)
        codec, extra, selects = self.codec, {}, self.fusion.selects_cells
        rows = collaborator_rows(features, codec.reads_reduced_maps and not selects)
        rows = rows.unsqueeze(0).expand(k, *rows.shape)
        row_snr = link_snr(snr_db, b, a)[:, :, 1:].reshape(-1)
        if selects:  # Where2comm: send only the most important cells
            heat, _ = self.model.head(rows[0])
            conf = self.fusion.selection_score(heat)
            if self.fusion.threshold is not None:  # the cells above it: a count per link
                conf = self.fusion.selection_mask(conf)
            conf = conf.view(1, b * (a - 1), 1, h, w).expand(k, -1, -1, -1, -1)
            if self.fusion.threshold is None:  # the same count on every link
                codec = SelectiveCodec(inner=self.codec, keep_fraction=self.fusion.max_fraction)
                extra = {"importance": conf.reshape(k * b * (a - 1), 1, h, w)}
        # Encoded, on air (HARQ / ARQ rounds included) and decoded; with seeds, each
        # condition's block of rows in its own call from its own seed (v2x.condition_streams).
        if selects and not extra:  # each link's own cells, coded and charged per link
            on_air = send_cells(codec, self.channel, rows, row_snr, conf, seeds)
        else:
            on_air = send(codec, self.channel, rows, row_snr, extra, seeds)
        decoded = on_air.decoded.view(k, b, a - 1, c, h, w)
        # the cell masks' dtype: the maps' but at least float32 (a reduced-precision codec's
        # float16 / bfloat16 maps, Codec.decode: counts of h·w cells are exact in float32)
        flags = torch.promote_types(decoded.dtype, torch.float32)
        outcome, cells = on_air.outcome, on_air.cells
        # Cells each collaborator actually delivered ([K, B, A-1, 1, h, w]; None: all of them).
        sent = None
        if selects:
            sent = cells.selected.to(device, flags).view(k, b, a - 1, 1, h, w)
        delivered = cells.delivered
        if delivered is not None:  # cells the codec could not deliver are missing, not zero
            # [N, 1, h, w] per cell, or one flag per map ([N] / [N, 1, 1, 1])
            got = delivered.to(flags).reshape(k, b, a - 1, 1, -1)
            got = got.expand(k, b, a - 1, 1, h * w).reshape(k, b, a - 1, 1, h, w)
            sent = got if sent is None else sent * got
        if sent is not None:
            # A map none of whose cells arrived is masked everywhere: fusion ignores its values
            # (FUSIONS' contract), so they are set to 0, and conditions that differ only there
            # (e.g. a closed DeepJSCC gate at several low SNRs) can share one pass below.
            dead = sent.amax(dim=(-3, -2, -1), keepdim=True) <= 0  # [K, B, A-1, 1, 1, 1]
            if bool(dead.any()):  # (one flag read saves a pass over every map)
                decoded = torch.where(dead, 0.0, decoded)
        present = batch.agent_mask[:, 1:]
        for name in COST_FIELDS:
            getattr(cost, name)[:, :, 1:] = getattr(on_air.cost, name).view(k, b, a - 1) * present
        for name in RECEPTION_FIELDS:
            getattr(cost, name)[:, :, 1:] = (
                getattr(outcome, name).to(device).view(k, b, a - 1) * present
            )
        # Cells: those whose values the transmitter conveyed (the codec's meta["sent"], within
        # the Where2comm selection) and those of them that arrived and go to fusion (the mask
        # fusion gets, before warping).
        conveyed = cells.sent
        known = None if conveyed is None else conveyed.to(device).reshape(k, b, a - 1, 1, h, w)
        if selects:
            chosen = cells.selected.to(device, torch.bool).view(k, b, a - 1, 1, h, w)
            known = chosen if known is None else known & chosen
        if known is None:
            cells_sent = torch.full((k, b, a - 1), float(h * w), device=device)
            used = sent
        else:
            cells_sent = known.sum(dim=(-3, -2, -1)).double()
            used = known.to(flags) if sent is None else known * sent
        cells_used = cells_sent if used is None else used.sum(dim=(-3, -2, -1)).double()
        cost.cells_sent[:, :, 1:] = cells_sent.double() * present
        cost.cells_used[:, :, 1:] = cells_used * present
        # a link that selected no cell (a threshold above its every score) is not on air
        on = chosen.flatten(3).any(-1) if selects else True
        cost.sent[:, :, 1:] = present & on
        # Without pose noise the warp is the same for every condition: one grid per (frame,
        # agent), and conditions whose decoded maps are bitwise equal (an error-free codec, a
        # digital link above its cliff) share one warp + fusion + head + NMS.
        noisy = self.pose_noise_m != 0 or self.pose_noise_yaw_rad != 0
        inverse = None
        if not noisy and k > 1 and (sent is not None or not codec.maps_differ_per_condition):
            reps, inverse = _distinct_conditions(decoded, sent)
            if reps == list(range(len(reps))) and len(reps) < k:  # the first u: a view
                decoded = decoded[: len(reps)]
                sent = None if sent is None else sent[: len(reps)]
            elif len(reps) < k:
                pick = to_device_async(torch.tensor(reps), device)
                decoded = decoded.index_select(0, pick)
                sent = None if sent is None else sent.index_select(0, pick)
            else:
                inverse = None
        u = decoded.shape[0]
        if noisy:
            poses = batch.poses.unsqueeze(0).expand(k, b, a, 4, 4).reshape(k * b, a, 4, 4)
            sample_grid, coverage = warp_sampling_grid(
                self._noisy_relative(poses, seeds)[:, 1:], self.model.grid, h, w
            )
        else:
            one, coverage = warp_sampling_grid(
                self._noisy_relative(batch.poses)[:, 1:], self.model.grid, h, w
            )
            sample_grid = one.unsqueeze(0).expand(u, *one.shape).reshape(-1, h, w, 2)
        if sent is None:  # every cell was sent: where a map arrives depends on geometry only
            arrived = arrived_cells(sample_grid if noisy else one)
        else:
            arrived = arrived_cells(sample_grid, sent)
        valid_collab = (
            (
                coverage.view(-1, b, a - 1, 1, h, w)
                & arrived.view(-1, b, a - 1, 1, h, w)
                & present.view(1, b, a - 1, 1, 1, 1)
            )
            .expand(u, b, a - 1, 1, h, w)
            .reshape(u * b, a - 1, 1, h, w)
        )
        if self.fusion.compensates_latency and motion is not None:
            # latency compensation: the cells of each collaborator's moving boxes moved on by
            # their estimated motion over the estimated age (max_extrapolated)
            sample_grid, valid_collab = self._compensate(
                batch, features.float(), motion, sample_grid, valid_collab
            )
        # Only collaborators are warped; the ego's map is already in the ego frame. The same
        # warp + fusion + head as training (v2x.perception.losses.fused_head_outputs).
        ego = features[:, :1]  # [B, 1, C, h, w]: fuse_at_ego repeats it for the u blocks
        collaborators = decoded.reshape(u * b, a - 1, c, h, w)
        _, heat, reg = fuse_at_ego(
            self.model, self.fusion, ego, collaborators, sample_grid, valid_collab
        )
        det = self.model.postprocess(heat, reg)
        if inverse is not None:
            rows_of = to_device_async(inverse[:, None] * b + torch.arange(b), device).reshape(-1)
            det = Detections(
                *(
                    t.index_select(0, rows_of)
                    for t in (det.boxes, det.scores, det.labels, det.valid)
                )
            )
        return RunOutput(det, cost, k)

    def _compensate(
        self,
        batch: CoopBatch,
        features: torch.Tensor,
        motion: MotionHistory,
        sample_grid: torch.Tensor,
        valid: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The warp ``sample_grid [R·B·(A−1), h, w, 2]`` and ``valid [R·B, A−1, 1, h, w]`` of
        ``R`` conditions with each collaborator's moving boxes moved on (``box_flow``): boxes
        from its own map and its previous scan's, extrapolated by the fusion over
        ``motion.age_s``, without pose noise (the displacements are what matter; the pose-noise
        generator is left alone)."""
        b, a, c, h, w = features.shape
        own, boxes, ok = boxes_in_ego_frame(self, batch, features, noisy=False)
        before = motion.previous
        previous = self.model.encode(before.points, before.point_mask, before.poses)
        prev, prev_boxes, prev_ok = boxes_in_ego_frame(self, before, previous, noisy=False)
        kk = boxes.shape[2]
        shifted = self.fusion.extrapolate(
            boxes, ok, own.labels.view(b, a, kk), prev_boxes, prev_ok,
            prev.labels.view(b, a, -1), motion.age_s.to(boxes.device), motion.period_s,
        )  # fmt: skip
        shift = (shifted - boxes)[:, 1:, :, :2].reshape(b * (a - 1), kk, 2)
        flow, moved, vacated = box_flow(
            boxes[:, 1:].reshape(b * (a - 1), kk, 7), shift, ok[:, 1:].reshape(b * (a - 1), kk),
            self.model.grid, h, w, self.fusion.margin_m,
        )  # fmt: skip
        r = valid.shape[0] // b

        def per_condition(t: torch.Tensor) -> torch.Tensor:
            return t.unsqueeze(0).expand(r, *t.shape).reshape(-1, *t.shape[1:])

        grid, ok_cells = compose_sampling(
            sample_grid, per_condition(flow), per_condition(moved), per_condition(vacated),
            valid.reshape(-1, 1, h, w),
        )  # fmt: skip
        return grid, ok_cells.view(r * b, a - 1, 1, h, w)
