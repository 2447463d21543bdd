"""Every path under the data root, in one place.

The stages write here, the training job and the evaluation read here, and a user moving a
data root moves all of it: so each path is spelled once, and code elsewhere asks this class.
Nothing here creates folders (the Dagster resource does, for the stage that writes them).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from assets.contract.shards import shard_count, shard_keys

BASE_MODEL_REF = "model/base"  # a recipe's base_model that means "the model/base asset"
# Where the code lives (not data): subprocesses such as the training job run from here.
PROJECT_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class DataLayout:
    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    # -- sources and ChatML
    @property
    def embedded(self) -> Path:
        """Generated local samples in the hub repos' layouts (the embedded default)."""
        return self.root / "embedded"

    def raw(self, source: str) -> Path:
        return self.root / "raw" / source

    def chatml(self, source: str) -> Path:
        return self.root / "chatml" / source

    def conversations(self, source: str) -> Path:
        """The unsharded table (a hand-written or older data root); sharded stages write parts."""
        return self.chatml(source) / "conversations.parquet"

    def chatml_shard(self, source: str, shard: str) -> Path:
        """One shard's folder (``assets/contract/shards.py``): conversations, rejected, status."""
        return self.chatml(source) / "shards" / shard

    def conversation_parts(self, source: str) -> list[Path]:
        """Every shard's conversations of ``source`` in shard order (or the unsharded table)."""
        return _parts(self.chatml(source), "conversations.parquet")

    def undecodable(self, source: str) -> Path:
        """Records of a source no reader could decode (``undecodable_record``)."""
        return self.raw(source) / "undecodable.parquet"

    def chatml_status(self, source: str) -> Path:
        """The chatml guards' verdicts, written last: what downstream stages check first."""
        return self.chatml(source) / "status.json"

    @property
    def image_verdicts(self) -> Path:
        """Full-decode verdicts of images by content hash (a re-run decodes nothing again)."""
        return self.root / ".cache" / "image-verdicts"

    @property
    def counting_rules(self) -> Path:
        """The base model's checked tokenizer backend and patch rule, by the model files' hash
        (``assets/tokens/counter_cache.py``): a token_counts step loads no processor again."""
        return self.root / ".cache" / "token-counting"

    def chatml_sources(self) -> list[str]:
        """Sources with a ChatML folder, sorted (what a reader of every source walks)."""
        base = self.root / "chatml"
        return sorted(p.name for p in base.glob("*") if p.is_dir()) if base.is_dir() else []

    # -- video and tokens
    @property
    def video_frames(self) -> Path:
        return self.root / "video_frames"

    @property
    def token_counts(self) -> Path:
        return self.root / "token_counts"

    @property
    def token_counts_file(self) -> Path:
        return self.token_counts / "token_counts.parquet"

    def video_frames_shard(self, shard: str) -> Path:
        """One shard's videos/samples/rejected tables (frames/ is shared: keyed by content)."""
        return self.video_frames / "shards" / shard

    def video_frames_parts(self) -> list[Path]:
        """Folders holding samples.parquet + videos.parquet: every shard (or the unsharded one)."""
        return [p.parent for p in _parts(self.video_frames, "samples.parquet")]

    def token_counts_shard(self, shard: str) -> Path:
        return self.token_counts / "shards" / shard

    def token_count_parts(self) -> list[Path]:
        """Every shard's token_counts.parquet in shard order (or the unsharded table)."""
        return _parts(self.token_counts, "token_counts.parquet")

    # -- packing and the mixture (docs/packed_shards.md)
    def packed(self, stage: str) -> Path:
        return self.root / "packed" / stage

    def sequences(self, stage: str) -> Path:
        return self.packed(stage) / "sequences.parquet"

    def assignments(self, stage: str) -> Path:
        return self.packed(stage) / "assignments.parquet"

    def mixture_dir(self, stage: str) -> Path:
        return self.root / "etvlm_mixture" / stage

    def mixture(self, stage: str) -> Path:
        return self.mixture_dir(stage) / "mixture.parquet"

    def data_card(self, stage: str) -> Path:
        return self.mixture_dir(stage) / "data_card.md"

    # -- models
    @property
    def base_model(self) -> Path:
        return self.root / "model" / "base"

    def checkpoint_run(self, recipe: str, stage: str) -> Path:
        """One stage's training folder: run config, resumable state, logs, and ``final``."""
        return self.root / "checkpoints" / recipe / stage

    def checkpoint(self, recipe: str, stage: str) -> Path:
        """The Hugging Face folder (safetensors + config + processor) of a finished stage."""
        return self.checkpoint_run(recipe, stage) / "final"

    # -- evaluation
    def benchmark(self, name: str) -> Path:
        return self.root / "benchmarks" / name

    def benchmark_items(self, name: str) -> Path:
        return self.benchmark(name) / "items.parquet"

    @property
    def eval_root(self) -> Path:
        return self.root / "eval"

    @property
    def leaderboard(self) -> Path:
        return self.root / "leaderboard"


def _parts(folder: Path, name: str) -> list[Path]:
    """``folder/shards/<key>/name`` for the configured shard keys (``GIRAFFE_SHARDS``; folders
    of an older shard count are ignored) when the stage is sharded, else ``folder/name`` when
    that exists (a table written by hand or by an unsharded run), else nothing."""
    parts = [folder / "shards" / key / name for key in shard_keys(shard_count())]
    if any(p.is_file() for p in parts):
        return [p for p in parts if p.is_file()]
    return [folder / name] if (folder / name).is_file() else []
