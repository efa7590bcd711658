"""Training batches read from the stage shards, addressed by position.

``batch_at(i)`` returns micro-batch number i of the run. Each epoch groups the train clips
by bucket (a batch must share one shape), chunks each group into batches and shuffles the
batches with a generator seeded by (train.seed, epoch). Addressing by position, not by an
iterator, lets a resumed run read exactly the batches the interrupted one would have read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from aiprod_recipes.model.text import PromptFeatures
from aiprod_recipes.store.shards import ShardReader
from aiprod_recipes.training.forward import Batch


class NoTrainingData(ValueError):
    """No train clip has every input the strategy needs."""


@dataclass
class TrainData:
    items: list[str]
    latents: ShardReader
    embed: ShardReader
    reference: ShardReader | None
    batch_size: int
    seed: int
    with_audio: bool
    reference_downscale: int = 1
    _epochs: dict[int, list[list[str]]] = field(default_factory=dict)
    _per_epoch: int = 0

    @staticmethod
    def open(train_items: list[str], folders: dict[str, Path], batch_size: int, seed: int,
             with_audio: bool, use_reference: bool, reference_downscale: int) -> TrainData:
        """The train clips that have latents, text features (and references when needed)."""
        latents, embed = ShardReader(folders["latents"]), ShardReader(folders["embed"])
        reference = ShardReader(folders["reference"]) if use_reference else None
        usable = [i for i in train_items if i in latents.by_item and i in embed.by_item
                  and (reference is None or i in reference.by_item)]
        if with_audio:
            usable = [i for i in usable if "audio" in latents.by_item[i]["tensors"]]
        if not usable:
            raise NoTrainingData(
                f"none of the {len(train_items)} train clip(s) has latents and text features"
                + (" and reference latents" if use_reference else "")
                + (" and audio latents" if with_audio else ""))
        return TrainData(sorted(usable), latents, embed, reference, batch_size, seed,
                         with_audio, reference_downscale)

    def groups(self) -> dict[str, list[str]]:
        """Train clips by bucket (a batch must share one shape)."""
        out: dict[str, list[str]] = {}
        for item in self.items:
            out.setdefault(self.latents.by_item[item]["bucket"], []).append(item)
        return out

    def batches_per_epoch(self) -> int:
        return sum(-(-len(m) // self.batch_size) for m in self.groups().values())

    def epoch(self, e: int) -> list[list[str]]:
        """The batches of epoch ``e``: bucket groups chunked, then shuffled (seeded). The
        latest epoch is kept, so consecutive steps do not redo the shuffle."""
        if e not in self._epochs:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + e)
            groups = self.groups()
            batches = []
            for bucket in sorted(groups):
                members = groups[bucket]
                order = torch.randperm(len(members), generator=g).tolist()
                shuffled = [members[k] for k in order]
                batches += [shuffled[k:k + self.batch_size]
                            for k in range(0, len(shuffled), self.batch_size)]
            order = torch.randperm(len(batches), generator=g).tolist()
            self._epochs = {e: [batches[k] for k in order]}
        return self._epochs[e]

    def batch_at(self, index: int) -> Batch:
        per_epoch = self._per_epoch or self.batches_per_epoch()
        self._per_epoch = per_epoch
        return self.load(self.epoch(index // per_epoch)[index % per_epoch])

    def load(self, items: list[str]) -> Batch:
        """Read and stack the tensors of some clips."""
        lat = [self.latents.item_tensors(i) for i in items]
        texts = [self.embed.item_tensors(i) for i in items]
        features = [PromptFeatures(video=t["video"], audio=t.get("audio"), mask=t["mask"])
                    for t in texts]
        audio = torch.stack([x["audio"] for x in lat]).float() if self.with_audio else None
        reference = None
        if self.reference is not None:
            reference = torch.stack([self.reference.item_tensors(i)["video"]
                                     for i in items]).float()
        return Batch(video=torch.stack([x["video"] for x in lat]).float(), text=features,
                     audio=audio, reference=reference,
                     fps=float(self.latents.by_item[items[0]]["fps"]),
                     reference_downscale=self.reference_downscale)
