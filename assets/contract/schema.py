"""Column descriptions that live with their schema: in each pyarrow field's metadata.

A table a user opens (in the Dagster UI's column schema, or with pyarrow/polars on the file,
which keeps the field metadata) should say what every column means without reading our code.
Each stage module defines its schema and the descriptions beside it with :func:`described`,
which refuses a schema with an undescribed column, so a new column cannot arrive without one.
"""

from __future__ import annotations

from collections.abc import Mapping

import pyarrow as pa

DESCRIPTION_KEY = b"description"


def described(schema: pa.Schema, descriptions: Mapping[str, str]) -> pa.Schema:
    """``schema`` with ``descriptions[name]`` in each field's metadata (other metadata kept).
    Every field must be described and every description must name a field."""
    names = set(schema.names)
    missing = [n for n in schema.names if not descriptions.get(n)]
    unknown = sorted(set(descriptions) - names)
    if missing or unknown:
        raise ValueError(f"column descriptions: missing for {missing}, unknown columns {unknown}")
    fields = [
        f.with_metadata({**(f.metadata or {}), DESCRIPTION_KEY: descriptions[f.name].encode()}) for f in schema
    ]
    return pa.schema(fields, metadata=schema.metadata)


def description(field: pa.Field) -> str | None:
    value = (field.metadata or {}).get(DESCRIPTION_KEY)
    return value.decode() if value is not None else None


def type_name(kind: pa.DataType) -> str:
    """A short type for a reader: ``list<struct<role, content>>``, not pyarrow's full nested spelling."""
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return f"list<{type_name(kind.value_type)}>"
    if pa.types.is_struct(kind):
        return "struct<" + ", ".join(kind.field(i).name for i in range(kind.num_fields)) + ">"
    if pa.types.is_dictionary(kind):
        return type_name(kind.value_type)
    return str(kind)
