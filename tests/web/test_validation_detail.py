"""A 422's ``detail`` says what each refused field asks for, from the error's type and
the schema's limits only: pydantic's own messages quote the input for some types (a
custom validator's, a UUID's), and a refusal never carries the input (decision 0034)."""

from __future__ import annotations

import pytest

from kroonika.web._app import _expected

CODE = "38001085718"


@pytest.mark.parametrize(
    ("error", "said"),
    [
        ({"type": "missing", "msg": "Field required"}, "is required"),
        ({"type": "less_than_equal", "ctx": {"le": 1000}, "input": CODE}, "must be at most 1000"),
        (
            {"type": "literal_error", "ctx": {"expected": "'json' or 'jsonl'"}, "input": CODE},
            "must be 'json' or 'jsonl'",
        ),
        ({"type": "int_parsing", "input": CODE}, "must be an integer"),
        ({"type": "value_error", "msg": f"Value error, {CODE}", "input": CODE}, "is not valid"),
        ({"type": "uuid_parsing", "msg": f"found `{CODE[0]}` at 1", "input": CODE}, "is not valid"),
        ({"type": "less_than_equal", "ctx": {}, "input": CODE}, "is not valid"),
        ({"type": "less_than_equal", "input": CODE}, "is not valid"),
    ],
)
def test_the_detail_comes_from_the_type_and_the_schema(error: dict[str, object], said: str) -> None:
    """Known types say what is expected; any other, or a missing limit, says "is not valid"."""
    assert _expected(error) == said
