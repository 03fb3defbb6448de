"""How an answer index is built and searched: the options `bot.yml` may override.

Kept apart from `retrieval/index.py` (and free of FAISS) so that `bot/project.py` can check a
bot's `retrieval.options` when it loads `bot.yml`, and a typo or an out-of-range value stops
there with the file and line instead of minutes into `bot train`.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

IndexType = Literal["auto", "flat", "ivf", "ivf-sq8"]
IVF_TYPES = ("ivf", "ivf-sq8")  # inverted lists, of float vectors or of one byte a dimension (4 times smaller)


class Settings(BaseModel):
    """A section of bot.yml (these options, and every section bot/project.py reads), as YAML means it.

    No unknown keys, and no .inf or .nan: YAML reads them as numbers, which pass every "more than 0".
    Defined here, not in the bot package, because the retrieval package does not import the bot's.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _as_yaml_means_it(cls, value: Any, info: ValidationInfo) -> Any:
        """Two YAML readings pydantic would take otherwise. A key left empty, such as a section whose lines are
        all commented out (``handoff:`` alone), is null: it means the default. And yes/no/on/off are booleans,
        which pydantic would take as 1 and 0 where a number belongs (``port: yes`` served on port 1)."""
        field = cls.model_fields[info.field_name]
        kinds = _kinds(field.annotation)
        if value is None and type(None) not in kinds and not field.is_required():
            return field.get_default(call_default_factory=True)
        if isinstance(value, bool) and bool not in kinds and kinds & {int, float}:
            raise ValueError(f"expected a number, not {value!r} (YAML reads yes, no, on and off as true and false)")
        return value


def _kinds(annotation: Any) -> set[Any]:
    """The types an annotation is made of: {int, NoneType} for `int | None`."""
    return {annotation}.union(*(_kinds(arg) for arg in get_args(annotation)))


class IndexOptions(Settings):
    """Every option has a default chosen with `bot bench retrieval` on a 2-core CPU
    (bench/RETRIEVAL.md); unknown names and out-of-range values are refused."""

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
