"""The shapes of JSON data the gateway reads and writes, for annotations instead of ``Any``.

Request and response bodies, feature rows and output documents are JSON: a value is a scalar, a
list of values or an object of values. Code that only passes values along annotates them as
:data:`JsonValue` (or ``object`` when it never looks inside); code that takes a value apart narrows
it with ``isinstance`` first, so a body the vendor changed fails as a decode error, not as a crash.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeAlias

JsonScalar: TypeAlias = str | int | float | bool | None
JsonValue: TypeAlias = JsonScalar | list["JsonValue"] | dict[str, "JsonValue"]
JsonObject: TypeAlias = dict[str, JsonValue]
# A feature row: feature name -> value, as a record's JSON value decodes or a batch file's reader gives
# it (Arrow rows can hold bytes or dates besides JSON values); the encoders write each value as it is.
Row: TypeAlias = Mapping[str, object]
