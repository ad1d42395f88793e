"""The ``parking:`` section: car parks whose entry and exit barriers share one occupancy counter."""

from __future__ import annotations

from pydantic import Field, model_validator

from agent.config import Integer, Name, Seconds, Section


class CarParkConfig(Section):
    """One car park. Old estates have ~500 spaces for ~1,700 cars: the platform shows spaces left."""

    name: Name
    capacity: Integer = Field(ge=1, le=100_000, description="number of spaces")
    entries: list[Name] = Field(description="barriers that let cars in (one car passing counts +1)")
    exits: list[Name] = Field(default_factory=list, description="barriers that let cars out (counts -1)")
    admit_residents_when_full: bool = Field(
        True, description="when full, residents are still let in (visitors with a valid-until are refused); "
        "false: nobody is let in until a space frees up"
    )
    let_out_unread_after_seconds: Seconds | None = Field(
        8.0, description="an exit barrier with an approach loop lets out a car that has waited on it this long "
        "without its plate read (dirty, bent or missing); null: only a read plate or the platform's open"
    )

    @model_validator(mode="after")
    def _lanes_distinct(self) -> CarParkConfig:
        both = set(self.entries) & set(self.exits)
        if both:
            raise ValueError(f"a barrier cannot be both entry and exit: {', '.join(sorted(both))}")
        if not self.entries:
            raise ValueError("give at least one entry barrier")
        return self
