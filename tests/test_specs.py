"""Year and member specs."""

import pytest

from clusterfarm.errors import UsageError
from clusterfarm.specs import format_spec, parse_spec


@pytest.mark.parametrize(
    ("spec", "numbers"),
    [
        ("2005", [2005]),
        ("2000-2003", [2000, 2001, 2002, 2003]),
        ("2000,2003,2005-2007", [2000, 2003, 2005, 2006, 2007]),
        (" 2001 , 2000 ", [2000, 2001]),
        ("3,1-3", [1, 2, 3]),
        (7, [7]),
    ],
)
def test_spec_names_these_numbers(spec, numbers):
    assert parse_spec(spec) == numbers


@pytest.mark.parametrize(
    ("spec", "complaint"),
    [
        ("2012-2000", "reversed; write 2000-2012"),
        ("20x0", "not a number"),
        ("", "empty"),
        ("2000,,2001", "not a number"),
        ("-5", "not a number"),
        ("2000-", "not a number"),
    ],
)
def test_bad_spec_is_a_usage_error_saying_why(spec, complaint):
    with pytest.raises(UsageError, match=complaint):
        parse_spec(spec)


def test_format_spec_is_the_inverse_of_parse():
    numbers = [2000, 2001, 2002, 2005, 2007, 2008]
    assert format_spec(numbers) == "2000-2002,2005,2007-2008"
    assert parse_spec(format_spec(numbers)) == numbers
