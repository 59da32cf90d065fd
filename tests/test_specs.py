"""Year and member specs."""

import pytest

from clusterfarm.config.specs import format_spec, parse_spec
from clusterfarm.errors import UsageError


@pytest.mark.parametrize(
    ("spec", "numbers"),
    [
        ("2005", [2005]),
        ("2000-2003", [2000, 2001, 2002, 2003]),
        ("2000,2003,2005-2007", [2000, 2003, 2005, 2006, 2007]),
        (" 2001 , 2000 ", [2000, 2001]),
        ("3,1-3", [1, 2, 3]),
        (7, [7]),
        ("0001-0003,0850", [1, 2, 3, 850]),  # model years
        ("0-9999", list(range(10000))),
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
        ("2000--2001", "'2000--2001' is not a number or range"),
        ("2_000", "not a number"),
        ("\uff12\uff10\uff10\uff10", "not a number"),  # full-width digits
        ("0-99999999", "99999999 is out of range; years go from 0 to 9999"),
        ("1" + "0" * 5000, "out of range"),  # refused before int() would choke on it
    ],
)
def test_bad_spec_is_a_usage_error_saying_why(spec, complaint):
    with pytest.raises(UsageError, match=complaint):
        parse_spec(spec)


def test_format_spec_is_the_inverse_of_parse():
    numbers = [2000, 2001, 2002, 2005, 2007, 2008]
    assert format_spec(numbers) == "2000-2002,2005,2007-2008"
    assert parse_spec(format_spec(numbers)) == numbers


def test_members_go_from_0_to_999():
    assert parse_spec("0-999", "member")[-1] == 999
    with pytest.raises(UsageError, match="1000 is out of range; members go from 0 to 999"):
        parse_spec("0-1000", "member")
