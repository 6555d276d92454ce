"""Request bodies of the REST routes: text fields PostgreSQL can store, or a 400 naming the field."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, field_validator
from pydantic.alias_generators import to_camel

from catalog.api.text import json_defect, text_defect


def storable(value: str) -> str:
    """A pydantic validator: no NUL, no lone surrogate (see catalog/api/text.py)."""
    reason = text_defect(value)
    if reason:
        raise ValueError(reason)
    return value


StoredText = Annotated[str, AfterValidator(storable)]


class InputModel(BaseModel):
    """Base of every JSON body a route takes: each field, strings nested in lists and objects included,
    must be storable text, so a NUL in any field is a 400 naming it (`pointer`), never a 500. Members are
    camelCase, as every response is (snake_case spellings are accepted too, for clients written before)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    @field_validator("*", mode="after")
    @classmethod
    def _storable_text(cls, value: Any) -> Any:
        found = json_defect(value)
        if found is not None:
            pointer, reason = found
            raise ValueError(f"{pointer[1:]}: {reason}" if pointer else reason)
        return value
