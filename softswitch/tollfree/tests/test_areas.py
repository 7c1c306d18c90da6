"""The checked-in area table matches what the generator makes from phonenumbers."""

from __future__ import annotations

import phonenumbers
import pytest

from softswitch.tollfree import areas, prefecture_of_area_code
from softswitch.tollfree.generate_areas import generate


def test_the_table_is_what_the_generator_makes() -> None:
    # pyproject.toml pins the release the table was made from: an upgrade must regenerate.
    assert areas.GENERATED_FROM == f"phonenumbers {phonenumbers.__version__}", (
        "regenerate: python -m softswitch.tollfree.generate_areas > softswitch/tollfree/areas.py"
    )
    with open(areas.__file__, encoding="utf-8") as checked_in:
        assert checked_in.read() == generate()


def test_every_prefecture_has_areas() -> None:
    assert set(areas.PREFECTURE_NAMES) == {f"{code:02d}" for code in range(1, 48)}
    assert {prefecture for _place, prefecture in areas.AREA_PREFIXES.values()} == set(
        areas.PREFECTURE_NAMES
    )
    assert all(prefix.startswith("0") for prefix in areas.AREA_PREFIXES)


@pytest.mark.parametrize(
    ("area_code", "prefecture"),
    [("03", "13"), ("06", "27"), ("011", "01"), ("0166", "01"), ("0422", "13"), ("042", None)],
)
def test_prefecture_of_area_code(area_code: str, prefecture: str | None) -> None:
    assert prefecture_of_area_code(area_code) == prefecture
