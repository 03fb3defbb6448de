"""How an answer index is built and searched: the options `bot.yml` may override.

Kept apart from `retrieval/index.py` (and free of FAISS) so that `bot/project.py` can check a
bot's `retrieval.options` when it loads `bot.yml`, and a typo or an out-of-range value stops
there with the file and line instead of minutes into `bot train`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

IndexType = Literal["auto", "flat", "ivf"]


class IndexOptions(BaseModel):
    """Every option has a default chosen with `bot bench retrieval` on a 2-core CPU
    (bench/RETRIEVAL.md); unknown names and out-of-range values are refused."""

    # strict: YAML's yes/no are booleans, which would otherwise pass as 1 and 0 (`nlist: yes`, one list)
    model_config = ConfigDict(extra="forbid", strict=True)

    index_type: IndexType = "auto"
    flat_max: int = Field(20_000, ge=0, description="auto: exact search up to this many answers, IVF above")
    nlist: int | None = Field(None, ge=1, description="IVF lists; None: about sqrt(n), at most n / 39")
    nprobe: int | None = Field(None, ge=1, description="IVF lists scanned per query; None: nlist / 128, at least 8")
    train_points_per_list: int = Field(40, ge=39, description="k-means training sample size, per list")
    kmeans_iters: int = Field(10, ge=1)
    dedup: bool = Field(True, description="collapse near-duplicate answers on build")
    dedup_threshold: float = Field(0.98, gt=0, le=1, description="cosine between the questions of equal answers")
    device: Literal["auto", "cpu", "gpu"] = "auto"
    seed: int = 1234
