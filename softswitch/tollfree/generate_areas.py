"""Build tool: writes the source of `softswitch/tollfree/areas.py` to standard output.

Run from the repository root, then review the diff and check the file in:

    .venv/bin/python -m softswitch.tollfree.generate_areas > softswitch/tollfree/areas.py

The switch never runs this module: it imports `areas.py`, a plain checked-in table. A
test (`tests/test_areas.py`) regenerates the table and compares it with the checked-in
one when the installed phonenumbers is the version the table names.

How the table is made:
1. Source: the Japanese entries (country code 81) of libphonenumber's geocoding data as
   the `phonenumbers` package ships it (`phonenumbers.geodata.GEOCODE_DATA`, the data
   `phonenumbers.geocoder.description_for_number(number, "ja")` answers from). Each entry
   is a number prefix with a place name in Japanese, the name of the unit charging area
   (単位料金区域, MA) the prefix belongs to ("札幌", "武蔵野三鷹"), and for most prefixes
   an English "City, Prefecture" name.
2. The prefix becomes national form: "81" replaced by the trunk prefix "0" (the Japanese
   numbering plan, 電気通信番号規則: a national number is 0 + the national significant
   number).
3. The prefecture (JIS X 0401 code) of a prefix comes from the prefecture named in its
   English description ("Sapporo, Hokkaido" -> "01"; Tokyo's entries are just "Tokyo").
   The prefixes without an English description (172 of them, 74 MA names such as
   武蔵野三鷹 or 種子島) get it from `_PLACE_PREFECTURES` below, a hand-made MA name ->
   prefecture map (checked against each MA's area code region); a name found in both
   sources must agree, or the tool stops.
4. The prefecture is the MA's prefecture. An MA crossing a prefecture border is filed
   under the prefecture its name place lies in: Machida (Tokyo) numbers 042-72x belong
   to the 相模原 MA and come out as Kanagawa (14), as the charging area does.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import phonenumbers
from phonenumbers.geodata import GEOCODE_DATA

__all__ = ["PREFECTURES", "generate", "main", "prefix_table"]

PREFECTURES: tuple[tuple[str, str, str], ...] = (
    # JIS X 0401 code, English name as the geocoding data spells it, Japanese name.
    ("01", "Hokkaido", "北海道"),
    ("02", "Aomori", "青森県"),
    ("03", "Iwate", "岩手県"),
    ("04", "Miyagi", "宮城県"),
    ("05", "Akita", "秋田県"),
    ("06", "Yamagata", "山形県"),
    ("07", "Fukushima", "福島県"),
    ("08", "Ibaraki", "茨城県"),
    ("09", "Tochigi", "栃木県"),
    ("10", "Gunma", "群馬県"),
    ("11", "Saitama", "埼玉県"),
    ("12", "Chiba", "千葉県"),
    ("13", "Tokyo", "東京都"),
    ("14", "Kanagawa", "神奈川県"),
    ("15", "Niigata", "新潟県"),
    ("16", "Toyama", "富山県"),
    ("17", "Ishikawa", "石川県"),
    ("18", "Fukui", "福井県"),
    ("19", "Yamanashi", "山梨県"),
    ("20", "Nagano", "長野県"),
    ("21", "Gifu", "岐阜県"),
    ("22", "Shizuoka", "静岡県"),
    ("23", "Aichi", "愛知県"),
    ("24", "Mie", "三重県"),
    ("25", "Shiga", "滋賀県"),
    ("26", "Kyoto", "京都府"),
    ("27", "Osaka", "大阪府"),
    ("28", "Hyogo", "兵庫県"),
    ("29", "Nara", "奈良県"),
    ("30", "Wakayama", "和歌山県"),
    ("31", "Tottori", "鳥取県"),
    ("32", "Shimane", "島根県"),
    ("33", "Okayama", "岡山県"),
    ("34", "Hiroshima", "広島県"),
    ("35", "Yamaguchi", "山口県"),
    ("36", "Tokushima", "徳島県"),
    ("37", "Kagawa", "香川県"),
    ("38", "Ehime", "愛媛県"),
    ("39", "Kochi", "高知県"),
    ("40", "Fukuoka", "福岡県"),
    ("41", "Saga", "佐賀県"),
    ("42", "Nagasaki", "長崎県"),
    ("43", "Kumamoto", "熊本県"),
    ("44", "Oita", "大分県"),
    ("45", "Miyazaki", "宮崎県"),
    ("46", "Kagoshima", "鹿児島県"),
    ("47", "Okinawa", "沖縄県"),
)

# MA names the geocoding data gives no English description for, with their prefecture.
# Hand-made; each was checked against the area code region of its prefixes (01 Hokkaido,
# 02 Tohoku, 04/047 Kanto, 05 Tokai/Chubu, 07 Kinki, 08 Chugoku/Shikoku, 09 Kyushu).
_PLACE_PREFECTURES: dict[str, str] = {
    "三宅": "13", "三本松": "37", "三瀬谷": "24", "上野": "24", "中之島": "46",
    "中甑": "46", "丹波柏原": "28", "丹生谷": "36", "久賀": "35", "五条": "29",
    "伊豆大島": "13", "会津山口": "07", "修善寺大仁": "22", "八丈島": "13", "八鹿": "28",
    "利尻礼文": "01", "北見枝幸": "01", "十勝池田": "01", "十勝清水": "01", "千代田": "34",
    "厳原": "42", "古川": "04", "和歌山橋本": "30", "土佐中村": "39", "土佐山田": "39",
    "大原": "12", "大和榛原": "29", "大根占": "46", "大町": "20", "天竜": "22",
    "安芸吉田": "34", "対馬佐賀": "42", "小出": "15", "尾張横須賀": "23", "岸和田貝塚": "27",
    "峰山": "26", "嶺北": "39", "巻": "15", "播磨山崎": "28", "新井": "15",
    "有川": "42", "木曾福島": "20", "松橋": "43", "根室標津": "01", "根雨": "31",
    "武蔵野三鷹": "13", "水海道": "08", "沖縄宮古": "47", "浜松": "22", "焼尻": "01",
    "熊本一の宮": "43", "牟岐": "36", "甲山": "34", "矢部": "43", "石狩深川": "01",
    "石見大田": "32", "硫黄島": "46", "磐城富岡": "07", "福渡": "33", "種子島": "46",
    "窪川": "39", "竜ケ崎": "08", "竜野": "28", "築館": "04", "美濃白川": "21",
    "迫": "04", "郡上八幡": "21", "郷ノ浦": "42", "長野": "20", "門別富川": "01",
    "阿波池田": "36", "高富": "21", "鰍沢青柳": "19", "鰺ケ沢": "02",
}  # fmt: skip

_COUNTRY_CODE = "81"
_TRUNK_PREFIX = "0"


def prefix_table() -> dict[str, tuple[str, str]]:
    """National prefix -> (MA name in Japanese, JIS prefecture code), sorted by prefix.

    Raises:
        ValueError: an entry whose prefecture cannot be told, or the two sources disagree.
    """
    by_english = {english: code for code, english, _japanese in PREFECTURES}
    table: dict[str, tuple[str, str]] = {}
    for prefix, names in GEOCODE_DATA.items():
        if not prefix.startswith(_COUNTRY_CODE):
            continue
        place = names.get("ja")
        english = names.get("en")
        from_english = by_english.get(english.rsplit(", ", 1)[-1]) if english else None
        from_place = _PLACE_PREFECTURES.get(place) if place else None
        if from_english and from_place and from_english != from_place:
            raise ValueError(f"{prefix}: {english!r} and {place!r} disagree")
        prefecture = from_english or from_place
        if prefecture is None:
            raise ValueError(f"{prefix}: no prefecture for {names!r}")
        if place is None:
            # A few prefixes carry only English (Omachi, Hamamatsu): their MA name is the
            # Japanese name of the same place under a neighbouring prefix.
            place = _japanese_name_of(english or "")
        national = _TRUNK_PREFIX + prefix[len(_COUNTRY_CODE) :]
        table[national] = (place, prefecture)
    return dict(sorted(table.items()))


def _japanese_name_of(english: str) -> str:
    for names in GEOCODE_DATA.values():
        if names.get("en") == english and "ja" in names:
            return names["ja"]
    raise ValueError(f"no Japanese name for {english!r}")


def _lines() -> Iterator[str]:
    version = phonenumbers.__version__
    yield '"""Japanese charging areas: number prefix -> MA name and prefecture. GENERATED.'
    yield ""
    yield "Do not edit: regenerate with"
    yield "`.venv/bin/python -m softswitch.tollfree.generate_areas > softswitch/tollfree/areas.py`"
    yield "(how the table is made: `softswitch/tollfree/generate_areas.py`)."
    yield ""
    yield "Rules:"
    yield "- `AREA_PREFIXES` maps a national number prefix (trunk prefix 0 included, `011`,"
    yield "  `01232`, `0422`) to (MA name in Japanese, JIS X 0401 prefecture code). The prefix"
    yield "  of a number is the longest key it starts with."
    yield "- `PREFECTURE_NAMES` maps each JIS code (`01` to `47`) to the prefecture's name."
    yield "- Source: libphonenumber's geocoding data as phonenumbers " + version + " ships it."
    yield '"""'
    yield ""
    yield "from __future__ import annotations"
    yield ""
    yield "from collections.abc import Mapping"
    yield "from types import MappingProxyType"
    yield ""
    yield '__all__ = ["AREA_PREFIXES", "GENERATED_FROM", "PREFECTURE_NAMES"]'
    yield ""
    yield f'GENERATED_FROM = "phonenumbers {version}"'
    yield ""
    yield "PREFECTURE_NAMES: Mapping[str, str] = MappingProxyType({"
    for code, _english, japanese in PREFECTURES:
        yield f'    "{code}": "{japanese}",'
    yield "})"
    yield ""
    yield "AREA_PREFIXES: Mapping[str, tuple[str, str]] = MappingProxyType({"
    for prefix, (place, prefecture) in prefix_table().items():
        yield f'    "{prefix}": ("{place}", "{prefecture}"),'
    yield "})"


def generate() -> str:
    """The source text of `areas.py`."""
    return "\n".join(_lines()) + "\n"


def main() -> None:
    """Write the source of `areas.py` to standard output."""
    sys.stdout.write(generate())


if __name__ == "__main__":
    main()
