"""Request and response bodies of the toll-free endpoints.

Rules:
- Request bodies forbid unknown fields (`extra="forbid"`): a misspelt setting is a 422
  naming it, never silently ignored.
- Pydantic checks only shapes and types here. The product's rules (weights per service
  type, channels within the contract, overlapping schedule ranges, area codes, ...) are
  checked by `custcon_api.tollfree.service` with `cloudpbx.rules`, so provisioning files
  and the API accept exactly the same values.
- Responses are built from the store's rows by the `of` class methods; the service also
  dumps them as the audit log's `before` / `after` views, so the audit log shows what
  the API shows.
- Numbers are shown in national form without separators (`0120000111`, `0312340001`);
  times of day as `HH:MM` (`24:00` only as an end); dates as ISO dates.
"""

from __future__ import annotations

import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from cloudpbx.domain import (
    AreaKind,
    RefusalAction,
    ScheduleAction,
    ScheduleRangeKind,
    TollFreeServiceType,
)
from cloudpbx.models import (
    Account,
    TollFreeDestination,
    TollFreeDestinationSet,
    TollFreeNumber,
    TollFreeSchedule,
    TollFreeScheduleRange,
)
from cloudpbx.rules import format_time_of_day

__all__ = [
    "AFTER_HOURS_ANNOUNCEMENTS",
    "MAX_CHANNELS",
    "NAME_PATTERN",
    "AfterHoursPublic",
    "AfterHoursUpdate",
    "ChannelSettingUpdate",
    "ChannelsPublic",
    "ContractInformation",
    "ContractUpdate",
    "DesignatedAreas",
    "DestinationIn",
    "DestinationPublic",
    "DestinationSetPublic",
    "DestinationSetUpdate",
    "DistributionShare",
    "GrantPublic",
    "ScheduleIn",
    "SchedulePublic",
    "ScheduleRangeIn",
    "ScheduleRangePublic",
    "TollFreeNumberCreate",
    "TollFreeNumberPublic",
    "WeightIn",
    "WeightsUpdate",
]

MAX_CHANNELS = 100_000
"""Upper bound of a contracted channel count the API accepts (a sanity bound, far above
any real contract, that keeps the value inside a 32-bit column)."""

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
"""Names of destination sets and schedules: letters, digits and `_.-`, 1 to 64."""

AFTER_HOURS_ANNOUNCEMENTS = ("after_hours_ja", "after_hours_en")
"""Recorded after-hours announcements a customer may choose (files under configs/)."""

_MAX_LIST = 64
"""Bound of the request lists whose real bound is a product rule checked by the service
(5 destinations, ...): the rule gives the precise 422, this only bounds the work."""

ServiceName = Annotated[str, Field(min_length=1, max_length=32)]
TollFreeText = Annotated[
    str,
    Field(
        min_length=1,
        max_length=32,
        description="0120 or 0800 number; hyphens, spaces and +81 are accepted",
    ),
]
NationalText = Annotated[
    str,
    Field(min_length=1, max_length=32, description="Japanese telephone number, e.g. 03-1234-0001"),
]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- numbers and contracts ------------------------------------------------------------


class TollFreeNumberCreate(_Request):
    """`POST /api/v1/tollfree-numbers` (operator): a new toll-free number contract."""

    number: TollFreeText
    tenant: Annotated[str, Field(min_length=1, max_length=64)]
    """The owning tenant's name (`demo`)."""
    service_type: TollFreeServiceType
    contracted_channels: Annotated[int, Field(ge=0, le=MAX_CHANNELS)]
    channel_setting: int | None = None
    """Initial channel setting; default the contracted channels."""
    options: Annotated[list[str], Field(max_length=_MAX_LIST)] = []
    """Option contracts (`cloudpbx.rules.TOLLFREE_OPTIONS`)."""
    strict_distribution: bool = False


class ContractUpdate(_Request):
    """`PATCH .../contract` (operator): the fields given change, the others stay."""

    service_type: TollFreeServiceType | None = None
    contracted_channels: Annotated[int, Field(ge=0, le=MAX_CHANNELS)] | None = None
    options: Annotated[list[str], Field(max_length=_MAX_LIST)] | None = None
    strict_distribution: bool | None = None


class TollFreeNumberPublic(BaseModel):
    """A toll-free number, its contract and its top-level settings."""

    number: str
    tenant: str
    service_type: TollFreeServiceType
    contracted_channels: int
    channel_setting: int
    strict_distribution: bool
    options: list[str]
    after_hours_announcement: str
    destination_sets: list[str]
    """Names of its destination sets (`default` is in force unless a schedule says
    otherwise)."""
    schedules: list[str]

    @classmethod
    def of(cls, number: TollFreeNumber) -> TollFreeNumberPublic:
        return cls(
            number=number.number,
            tenant=number.tenant.name,
            service_type=number.service_type,
            contracted_channels=number.contracted_channels,
            channel_setting=number.channel_setting,
            strict_distribution=number.strict_distribution,
            options=list(number.options),
            after_hours_announcement=number.after_hours_announcement,
            destination_sets=[destination_set.name for destination_set in number.destination_sets],
            schedules=[schedule.name for schedule in number.schedules],
        )


# --- channels and announcements -------------------------------------------------------


class ChannelSettingUpdate(_Request):
    """`PUT .../channels`: concurrent calls allowed (ch数), at most the contracted count,
    and how long the destinations ring (absent: unchanged)."""

    channel_setting: int
    no_answer_timeout_seconds: Annotated[int, Field(ge=5, le=300)] | None = None
    """Seconds the destinations ring in all before the caller gets 480 (default 30)."""


class ChannelsPublic(BaseModel):
    channel_setting: int
    contracted_channels: int
    no_answer_timeout_seconds: int

    @classmethod
    def of(cls, number: TollFreeNumber) -> ChannelsPublic:
        return cls(
            channel_setting=number.channel_setting,
            contracted_channels=number.contracted_channels,
            no_answer_timeout_seconds=number.no_answer_timeout_seconds,
        )


class AfterHoursUpdate(_Request):
    """`PUT .../after-hours`: which recording the after-hours schedules play (時間外案内)."""

    announcement: Literal["after_hours_ja", "after_hours_en"]


class AfterHoursPublic(BaseModel):
    announcement: str

    @classmethod
    def of(cls, number: TollFreeNumber) -> AfterHoursPublic:
        return cls(announcement=number.after_hours_announcement)


# --- destination sets -----------------------------------------------------------------


class DestinationIn(_Request):
    number: NationalText
    weight: int
    """Distribution weight: 0-9, 0-32 for the office type (checked against the contract)."""
    trunk: Annotated[str, Field(min_length=1, max_length=64)]
    """Name of the trunk that reaches the number (a carrier trunk or the tenant's own)."""


class DestinationSetUpdate(_Request):
    """`PUT .../destination-sets/{set}` (operator): the whole set, in order."""

    destinations: Annotated[list[DestinationIn], Field(max_length=_MAX_LIST)]


class WeightIn(_Request):
    number: NationalText
    """A destination number already in the set."""
    weight: int


class WeightsUpdate(_Request):
    """`PATCH .../destination-sets/{set}/weights`: the ratio change (振分比率の変更)."""

    weights: Annotated[list[WeightIn], Field(min_length=1, max_length=_MAX_LIST)]


class DestinationPublic(BaseModel):
    position: int
    number: str
    weight: int
    trunk: str

    @classmethod
    def of(cls, destination: TollFreeDestination) -> DestinationPublic:
        return cls(
            position=destination.position,
            number=destination.number,
            weight=destination.weight,
            trunk=destination.trunk.name,
        )


class DestinationSetPublic(BaseModel):
    name: str
    destinations: list[DestinationPublic]

    @classmethod
    def of(cls, destination_set: TollFreeDestinationSet) -> DestinationSetPublic:
        return cls(
            name=destination_set.name,
            destinations=[DestinationPublic.of(item) for item in destination_set.destinations],
        )


# --- schedules ------------------------------------------------------------------------


class ScheduleRangeIn(_Request):
    kind: ScheduleRangeKind
    weekday: Annotated[int, Field(ge=0, le=6)] | None = None
    """0 = Monday ... 6 = Sunday; required for `weekly`, refused otherwise."""
    date: datetime.date | None = None
    """Required for `date` (a dated exception), refused otherwise."""
    start: Annotated[str, Field(max_length=5)]
    """`HH:MM`, Asia/Tokyo."""
    end: Annotated[str, Field(max_length=5)]
    """`HH:MM`, exclusive; `24:00` is the end of the day."""


class ScheduleIn(_Request):
    """`PUT .../schedules/{name}`: when the action applies (スケジュール設定)."""

    action: ScheduleAction
    destination_set: Annotated[str, Field(max_length=64)] | None = None
    """The set calls go to: required for `destination_change`, refused for `after_hours`."""
    enabled: bool = True
    ranges: Annotated[list[ScheduleRangeIn], Field(max_length=200)]


class ScheduleRangePublic(BaseModel):
    kind: ScheduleRangeKind
    weekday: int | None
    date: datetime.date | None
    start: str
    end: str

    @classmethod
    def of(cls, schedule_range: TollFreeScheduleRange) -> ScheduleRangePublic:
        return cls(
            kind=schedule_range.kind,
            weekday=schedule_range.weekday,
            date=None
            if schedule_range.day is None
            else datetime.date.fromisoformat(schedule_range.day),
            start=format_time_of_day(schedule_range.start_minute),
            end=format_time_of_day(schedule_range.end_minute),
        )


class SchedulePublic(BaseModel):
    name: str
    action: ScheduleAction
    destination_set: str | None
    enabled: bool
    ranges: list[ScheduleRangePublic]

    @classmethod
    def of(cls, schedule: TollFreeSchedule) -> SchedulePublic:
        return cls(
            name=schedule.name,
            action=schedule.action,
            destination_set=(
                None if schedule.destination_set is None else schedule.destination_set.name
            ),
            enabled=schedule.enabled,
            ranges=[ScheduleRangePublic.of(item) for item in schedule.ranges],
        )


# --- designated areas -----------------------------------------------------------------


class DesignatedAreas(_Request):
    """Originating-area designation (発信地域指定): who is connected, and how others are
    refused. `PUT .../designated-areas` replaces all of it."""

    whole_country: bool
    """True: every domestic area is designated (全国); the lists below are kept but unused."""
    prefectures: Annotated[list[str], Field(max_length=47)]
    """JIS X 0401 codes, `01` (Hokkaido) to `47` (Okinawa)."""
    area_codes: Annotated[list[str], Field(max_length=1000)]
    """Area codes with the leading 0 (`03`, `06`)."""
    allow_fixed: bool
    allow_mobile: bool
    allow_withheld: bool
    """Callers who withhold their number (非通知)."""
    refusal_action: RefusalAction

    @classmethod
    def of(cls, number: TollFreeNumber) -> DesignatedAreas:
        prefectures = [
            area.code for area in number.designated_areas if area.kind is AreaKind.PREFECTURE
        ]
        area_codes = [
            area.code for area in number.designated_areas if area.kind is AreaKind.AREA_CODE
        ]
        return cls(
            whole_country=number.designated_whole_country,
            prefectures=sorted(prefectures),
            area_codes=sorted(area_codes),
            allow_fixed=number.allow_fixed,
            allow_mobile=number.allow_mobile,
            allow_withheld=number.allow_withheld,
            refusal_action=number.refusal_action,
        )


# --- account grants -------------------------------------------------------------------


class GrantPublic(BaseModel):
    """An account that may see (and, as a `user`, set) the toll-free number."""

    login: str
    role: str

    @classmethod
    def of(cls, account: Account) -> GrantPublic:
        return cls(login=account.login, role=account.role.value)


# --- contract information (ご契約内容の確認) ------------------------------------------


class DistributionShare(BaseModel):
    destination_number: str = Field(description="Destination number (着信先電話番号)")
    weight: int = Field(description="Distribution weight (振分比)")


class ContractInformation(BaseModel):
    """The read-only contract view a customer may consult at any time (seed 000)."""

    tollfree_number: str = Field(description="Toll-free number (着信課金番号)")
    contract_holder_name: str = Field(description="Contract holder name (契約者名)")
    address: str = Field(description="Address (住所等)")
    service_type: TollFreeServiceType = Field(
        description="Service type: standard, or office (ひかり電話オフィスタイプ)"
    )
    contracted_channels: int = Field(description="Contracted channels (契約ch数)")
    distribution_ratio: list[DistributionShare] = Field(
        description="Distribution ratio per destination of the default set (回線数振分比)"
    )
    destination_numbers: list[str] = Field(
        description=(
            "Destination numbers of every destination set, default set first: the contract "
            "numbers and additional numbers (契約者電話番号/追加番号)"
        )
    )
    designated_areas: DesignatedAreas = Field(
        description="Originating-area designation (発信地域指定)"
    )
    option_contracts: list[str] = Field(description="Option contracts (オプション機能契約内容)")

    @classmethod
    def of(cls, number: TollFreeNumber) -> ContractInformation:
        ordered = sorted(number.destination_sets, key=lambda item: item.name != "default")
        default = next((item for item in ordered if item.name == "default"), None)
        destination_numbers: list[str] = []
        for destination_set in ordered:
            for destination in destination_set.destinations:
                if destination.number not in destination_numbers:
                    destination_numbers.append(destination.number)
        return cls(
            tollfree_number=number.number,
            contract_holder_name=number.tenant.contract_holder_name,
            address=number.tenant.address,
            service_type=number.service_type,
            contracted_channels=number.contracted_channels,
            distribution_ratio=[]
            if default is None
            else [
                DistributionShare(destination_number=item.number, weight=item.weight)
                for item in default.destinations
            ],
            destination_numbers=destination_numbers,
            designated_areas=DesignatedAreas.of(number),
            option_contracts=list(number.options),
        )
