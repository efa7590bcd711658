"""Training batches read from the stage shards, addressed by position.

``batch_at(i)`` returns micro-batch number i of the run. Each epoch groups the train clips
by bucket (a batch must share one shape), chunks each group into batches and shuffles the
batches with a generator seeded by (train.seed, epoch). Addressing by position, not by an
iterator, lets a resumed run read exactly the batches the interrupted one would have read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from aiprod_recipes.model.text import PromptFeatures
from aiprod_recipes.names import EMBED, LATENTS, REFERENCE
from aiprod_recipes.store.shards import ShardReader
from aiprod_recipes.training.forward import Batch
from aiprod_recipes.training.strategies import Strategy


class NoTrainingData(ValueError):
    """No train clip has every input the strategy needs."""


@dataclass(frozen=True)
class ClipStore:
    """The stored inputs of clips (latents, text features, references when the strategy
    uses them), read into ``Batch``es the same way for training and for the held-out loss."""

    latents: ShardReader
    embed: ShardReader
    reference: ShardReader | None
    with_audio: bool
    reference_downscale: int = 1

    @staticmethod
    def open(folders: Mapping[str, Path], strategy: Strategy,
             reference_downscale: int) -> ClipStore:
        """``folders``: the latents, embed and reference stage outputs by stage name."""
        reference = ShardReader(folders[REFERENCE]) if strategy.uses_reference else None
        return ClipStore(ShardReader(folders[LATENTS]), ShardReader(folders[EMBED]), reference,
                         strategy.with_audio, reference_downscale)

    def usable(self, items: Sequence[str]) -> list[str]:
        """The clips of ``items`` with every stored input a batch needs, sorted."""
        have = [i for i in items if i in self.latents.by_item and i in self.embed.by_item
                and (self.reference is None or i in self.reference.by_item)]
        if self.with_audio:
            have = [i for i in have if "audio" in self.latents.by_item[i]["tensors"]]
        return sorted(have)

    def missing_inputs(self) -> str:
        """What a usable clip must have, for messages."""
        return ("latents and text features"
                + (" and reference latents" if self.reference is not None else "")
                + (" and audio latents" if self.with_audio else ""))

    def batch(self, items: Sequence[str]) -> Batch:
        """Read and stack the tensors of some clips (one bucket: one shape)."""
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


@dataclass
class TrainData:
    items: list[str]
    store: ClipStore
    batch_size: int
    seed: int
    _epochs: dict[int, list[list[str]]] = field(default_factory=dict)
    _per_epoch: int = 0

    @staticmethod
    def open(train_items: list[str], folders: Mapping[str, Path], batch_size: int, seed: int,
             strategy: Strategy, reference_downscale: int) -> TrainData:
        """The train clips that have latents, text features (and references when needed)."""
        store = ClipStore.open(folders, strategy, reference_downscale)
        usable = store.usable(train_items)
        if not usable:
            raise NoTrainingData(f"none of the {len(train_items)} train clip(s) has "
                                 f"{store.missing_inputs()}")
        return TrainData(usable, store, batch_size, seed)

    def groups(self) -> dict[str, list[str]]:
        """Train clips by bucket (a batch must share one shape)."""
        out: dict[str, list[str]] = {}
        for item in self.items:
            out.setdefault(self.store.latents.by_item[item]["bucket"], []).append(item)
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
        return self.store.batch(self.epoch(index // per_epoch)[index % per_epoch])
