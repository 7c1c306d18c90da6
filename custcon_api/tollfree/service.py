"""Toll-free numbers: who may see and change what, the rules of each change, its transaction.

Rules:
- Who may do what (issue 4 part 2). Where the role alone decides, it is decided before
  the number is even looked up, so such a refusal says nothing about any number:
  - `operator`: everything on every number. The contract is the operator's alone:
    creating and deleting a number, `PATCH .../contract` (service type, contracted
    channels, options) and the destinations of a destination set (numbers and trunks).
  - `tenant_admin`: the customer settings and the account grants of its tenant's numbers.
  - `user` with a grant on the number: the customer settings of that number.
  - `tollfree_viewer` with a grant: reads only.
  Customer settings: channel setting, distribution weights, schedules, after-hours
  announcement, designated areas. Reads: the number, its destination sets, schedules,
  designated areas and contract information. The grants list is read only by who
  manages grants (operator, tenant administrator).
- Not found versus forbidden: a non-operator gets the same 403 (same body) for every
  number it may not see, whether the number exists (another tenant's, or one not
  granted to it) or not; an operator gets 404 for a number that does not exist. A path
  that is no toll-free number at all is a 422 naming `number`: its form says nothing
  about the store. Once the caller may see a number, an unknown destination set,
  schedule or account under it is a 404.
- Numbers in paths and bodies may carry hyphens, spaces or +81; they are stored in
  national form (`cloudpbx.rules`). Every broken rule is one 422 entry naming its field
  (`channel_setting`, `weights[0].weight`, `ranges[1]`, ...); nothing is written then.
- Product rules come from `cloudpbx.rules`, as for provisioning files: weights 0-9 (0-32
  for the office type), at least one weight above 0, at most 5 destinations; the
  channel setting within the contract; schedule ranges of one schedule, or of two
  schedules with the same action, must not overlap (disabled schedules included, so
  enabling one never needs another check); designated areas are JIS prefecture codes
  and geographic area codes, and `whole_country: false` needs at least one of them.
- A destination names a trunk by name: a carrier trunk (no tenant) or one of the
  number's tenant; any other name is refused as unknown.
- Contract changes keep the settings valid: lowering the contracted channels lowers a
  channel setting above it to the new contract (the customer's setting may never exceed
  the contract, and the operator's contract change cannot wait for the customer);
  changing the service type to `standard` is refused (422 naming `service_type`) while a
  destination set has a weight above 9.
- Grants: only accounts of the number's tenant with role `user` or `tollfree_viewer`
  (another role is a 422 naming `login`; a login that is no account of the tenant is a
  404); at most `MAX_ACCOUNTS_PER_TOLLFREE_NUMBER` (50) accounts per number, the 51st is
  a 422 naming `login`. Granting an account that already has the grant changes nothing
  and answers 200 (a new grant 201).
- Every accepted write request writes one audit row in its transaction (actions
  `tollfree.create`, `tollfree.delete`, `tollfree.contract`, `tollfree.channels`,
  `tollfree.destination_set.update`, `tollfree.weights`, `tollfree.schedule.update`,
  `tollfree.schedule.delete`, `tollfree.after_hours`, `tollfree.designated_areas`,
  `tollfree.account.grant`, `tollfree.account.revoke`), with the number as target, its
  tenant, and `before` / `after` as the API shows them (null when the thing did not
  exist before / no longer exists). Writes lock the number's row first (`FOR UPDATE`
  on PostgreSQL), so two concurrent changes to one number are applied one after the
  other and the 50-account and overlap checks see each other's result.
- After the commit the change is published (`cloudpbx.notify`): `CONFIG` for everything
  the switch routes on, so every switch rebuilds its snapshot at once; `ACCOUNTS` for
  grants, which no snapshot holds (a switch need not rebuild for them).
"""

from __future__ import annotations

import datetime
import enum
import re
from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from cloudpbx.audit_views import tollfree_contract_view, tollfree_number_view
from cloudpbx.domain import (
    MAX_ACCOUNTS_PER_TOLLFREE_NUMBER,
    AccountRole,
    AreaKind,
    ScheduleAction,
    ScheduleRangeKind,
)
from cloudpbx.models import (
    Account,
    Tenant,
    TollFreeAccountGrant,
    TollFreeDesignatedArea,
    TollFreeDestination,
    TollFreeDestinationSet,
    TollFreeNumber,
    TollFreeSchedule,
    TollFreeScheduleRange,
    Trunk,
)
from cloudpbx.notify import ACCOUNTS, CONFIG
from cloudpbx.rules import (
    TOLLFREE_OPTIONS,
    ScheduleRangeValue,
    area_code_problem,
    channel_setting_problem,
    destination_set_problems,
    normalize_national_number,
    normalize_tollfree_number,
    parse_time_of_day,
    schedule_overlaps,
)
from custcon_api import audit
from custcon_api.deps import AppContext, Principal
from custcon_api.errors import Conflict, FieldProblem, Forbidden, NotFound
from custcon_api.errors import InvalidFields as _InvalidFields
from custcon_api.tollfree.schemas import (
    AfterHoursPublic,
    AfterHoursUpdate,
    ChannelSettingUpdate,
    ChannelsPublic,
    ContractUpdate,
    DesignatedAreas,
    DestinationSetPublic,
    DestinationSetUpdate,
    GrantPublic,
    ScheduleIn,
    SchedulePublic,
    TollFreeNumberCreate,
    WeightsUpdate,
)

__all__ = [
    "Access",
    "authorized_number",
    "create_number",
    "delete_grant",
    "delete_number",
    "delete_schedule",
    "list_grants",
    "list_numbers",
    "put_destination_set",
    "put_grant",
    "put_schedule",
    "set_after_hours",
    "set_channels",
    "set_designated_areas",
    "update_contract",
    "update_weights",
]


class Access(enum.Enum):
    """What a request does to a toll-free number (see the module rules)."""

    READ = "read"
    SETTINGS = "settings"
    GRANTS = "grants"
    CONTRACT = "contract"


_ROLE_ACCESS: dict[AccountRole, frozenset[Access]] = {
    AccountRole.OPERATOR: frozenset(Access),
    AccountRole.TENANT_ADMIN: frozenset({Access.READ, Access.SETTINGS, Access.GRANTS}),
    AccountRole.USER: frozenset({Access.READ, Access.SETTINGS}),
    AccountRole.TOLLFREE_VIEWER: frozenset({Access.READ}),
}

_ROLE_REFUSALS = {
    Access.READ: "your role cannot see toll-free numbers",
    Access.SETTINGS: "your role can only read toll-free settings",
    Access.GRANTS: "only an administrator of the tenant can grant toll-free numbers",
    Access.CONTRACT: "only an operator can change a toll-free contract",
}

_NOT_VISIBLE = "no toll-free number of yours has this number"
"""The one refusal for every number a non-operator may not see (exists or not)."""

_FIELD_PART = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]")


def _field_location(field: str) -> list[str | int]:
    """`weights[0].weight` as pydantic's location parts: `["weights", 0, "weight"]`."""
    return [name if name else int(index) for name, index in _FIELD_PART.findall(field)]


class InvalidFields(_InvalidFields):
    """A 422 whose `loc` has pydantic's shape for nested fields too.

    `custcon_api.errors.InvalidFields` names a field with one string; the toll-free
    bodies nest (`weights[0].weight`), and pydantic's own 422s for the same bodies say
    `["body", "weights", 0, "weight"]`: ours say it the same way, so a client handles
    both alike.
    """

    def body(self) -> object:
        return {
            "detail": [
                {
                    "type": problem.type,
                    "loc": [self.location, *_field_location(problem.field)],
                    "msg": problem.message,
                }
                for problem in self.problems
            ]
        }


_GRANTABLE_ROLES = frozenset({AccountRole.USER, AccountRole.TOLLFREE_VIEWER})
_DEFAULT_SET = "default"


# --- authorization --------------------------------------------------------------------


def _path_number(text: str) -> str:
    try:
        return normalize_tollfree_number(text)
    except ValueError as error:
        raise InvalidFields(
            [FieldProblem("number", "tollfree_number", str(error))], location="path"
        ) from None


def _visible_to(session: Session, account: Account, number: TollFreeNumber) -> bool:
    """Whether a non-operator `account` may see `number` at all."""
    if account.tenant_id is None or account.tenant_id != number.tenant_id:
        return False
    if account.role is AccountRole.TENANT_ADMIN:
        return True
    grant = session.scalars(
        select(TollFreeAccountGrant.id).where(
            TollFreeAccountGrant.tollfree_number_id == number.id,
            TollFreeAccountGrant.account_id == account.id,
        )
    ).first()
    return grant is not None


def authorized_number(
    session: Session, principal: Principal, number_text: str, access: Access
) -> TollFreeNumber:
    """The number `number_text` names, if the caller may do `access` on it.

    Writes (every access but READ) lock the number's row until the commit.

    Raises:
        Forbidden: the role may not do `access`, or the number is not visible to the
            caller (existing or not; see the module rules).
        InvalidFields: `number_text` is no toll-free number (422 naming `number`).
        NotFound: an operator named a number that does not exist.
    """
    account = principal.account
    if access not in _ROLE_ACCESS[account.role]:
        raise Forbidden(_ROLE_REFUSALS[access])
    national = _path_number(number_text)
    statement = select(TollFreeNumber).where(TollFreeNumber.number == national)
    if access is not Access.READ:
        statement = statement.with_for_update()
    number = session.scalars(statement).one_or_none()
    if account.role is AccountRole.OPERATOR:
        if number is None:
            raise NotFound("no such toll-free number")
        return number
    if number is None or not _visible_to(session, account, number):
        raise Forbidden(_NOT_VISIBLE)
    return number


def list_numbers(session: Session, principal: Principal) -> list[TollFreeNumber]:
    """The numbers the caller may see, by number."""
    account = principal.account
    statement = (
        select(TollFreeNumber)
        .options(
            selectinload(TollFreeNumber.tenant),
            selectinload(TollFreeNumber.destination_sets),
            selectinload(TollFreeNumber.schedules),
        )
        .order_by(TollFreeNumber.number)
    )
    if account.role is AccountRole.OPERATOR:
        pass
    elif account.role is AccountRole.TENANT_ADMIN:
        statement = statement.where(TollFreeNumber.tenant_id == account.tenant_id)
    else:
        statement = statement.join(TollFreeAccountGrant).where(
            TollFreeAccountGrant.account_id == account.id,
            TollFreeNumber.tenant_id == account.tenant_id,
        )
    return list(session.scalars(statement))


# --- the transaction of a change ------------------------------------------------------


def _commit(
    session: Session,
    context: AppContext,
    principal: Principal,
    number: TollFreeNumber,
    action: str,
    remote_address: str | None,
    *,
    before: dict[str, object] | None,
    after: dict[str, object] | None,
    topic: str = CONFIG,
    tenant_id: int | None = None,
) -> None:
    """Audit, commit and then publish one change of `number` (see the module rules)."""
    audit.record(
        session,
        at=context.clock(),
        action=action,
        actor=principal.account,
        target=number.number,
        tenant_id=number.tenant_id if tenant_id is None else tenant_id,
        before=before,
        after=after,
        remote_address=remote_address,
    )
    session.commit()
    # cloudpbx.notify: published after the commit, so a subscriber reads the change.
    context.notifier.publish(topic)


def _number_view(number: TollFreeNumber) -> dict[str, object]:
    """The whole number as the audit log keeps it on create and delete.

    `cloudpbx.audit_views.tollfree_number_view`: provisioning files audit numbers with
    the same view.
    """
    return tollfree_number_view(number)


def _contract_view(number: TollFreeNumber) -> dict[str, object]:
    """The contract fields `tollfree.contract` rows show (`cloudpbx.audit_views`)."""
    return tollfree_contract_view(number)


def _option_problems(options: Sequence[str]) -> list[FieldProblem]:
    known = ", ".join(sorted(TOLLFREE_OPTIONS))
    return [
        FieldProblem(f"options[{index}]", "unknown_option", f"must be one of {known}")
        for index, option in enumerate(options)
        if option not in TOLLFREE_OPTIONS
    ]


_RULE_FIELD = re.compile(r"^destinations\[(\d+)\]\.(\w+)$")


def _rule_type(field: str) -> str:
    """The 422 `type` of a destination-set rule problem, from the field it names."""
    if field.endswith(".weight"):
        return "weight_range"
    if field.endswith(".number"):
        return "duplicate_destination"
    return "destination_set"


# --- numbers and contracts ------------------------------------------------------------


def create_number(
    session: Session,
    context: AppContext,
    principal: Principal,
    body: TollFreeNumberCreate,
    remote_address: str | None,
) -> TollFreeNumber:
    """Create a toll-free number contract for a tenant (operator only).

    Raises:
        Forbidden: the caller is not an operator.
        InvalidFields: number, tenant, options or channel setting refused (422).
        Conflict: the number exists (409).
    """
    if Access.CONTRACT not in _ROLE_ACCESS[principal.account.role]:
        raise Forbidden(_ROLE_REFUSALS[Access.CONTRACT])
    problems: list[FieldProblem] = []
    national = ""
    try:
        national = normalize_tollfree_number(body.number)
    except ValueError as error:
        problems.append(FieldProblem("number", "tollfree_number", str(error)))
    tenant = session.scalars(select(Tenant).where(Tenant.name == body.tenant)).one_or_none()
    if tenant is None:
        problems.append(FieldProblem("tenant", "unknown_tenant", "is no tenant"))
    problems.extend(_option_problems(body.options))
    channel_setting = (
        body.contracted_channels if body.channel_setting is None else body.channel_setting
    )
    channel_problem = channel_setting_problem(channel_setting, body.contracted_channels)
    if channel_problem is not None:
        problems.append(FieldProblem("channel_setting", "channel_setting", channel_problem))
    if problems:
        raise InvalidFields(problems)
    assert tenant is not None
    existing = session.scalars(
        select(TollFreeNumber.id).where(TollFreeNumber.number == national)
    ).first()
    if existing is not None:
        raise Conflict("this toll-free number exists")
    number = TollFreeNumber(
        number=national,
        tenant=tenant,
        service_type=body.service_type,
        contracted_channels=body.contracted_channels,
        channel_setting=channel_setting,
        strict_distribution=body.strict_distribution,
        options=sorted(set(body.options)),
        destination_sets=[],
        schedules=[],
        designated_areas=[],
        grants=[],
    )
    session.add(number)
    try:
        session.flush()
    except IntegrityError:
        # Created by a concurrent request between the check and the insert.
        session.rollback()
        raise Conflict("this toll-free number exists") from None
    _commit(
        session,
        context,
        principal,
        number,
        "tollfree.create",
        remote_address,
        before=None,
        after=_number_view(number),
    )
    return number


def delete_number(
    session: Session,
    context: AppContext,
    principal: Principal,
    number_text: str,
    remote_address: str | None,
) -> None:
    """Delete a toll-free number with all its settings and grants (operator only)."""
    number = authorized_number(session, principal, number_text, Access.CONTRACT)
    before = _number_view(number)
    tenant_id = number.tenant_id
    session.delete(number)
    session.flush()
    _commit(
        session,
        context,
        principal,
        number,
        "tollfree.delete",
        remote_address,
        before=before,
        after=None,
        tenant_id=tenant_id,
    )


def update_contract(
    session: Session,
    context: AppContext,
    principal: Principal,
    number_text: str,
    body: ContractUpdate,
    remote_address: str | None,
) -> TollFreeNumber:
    """Change the contract: service type, contracted channels, options (operator only).

    Raises:
        InvalidFields: an unknown option, or `standard` while a weight is above 9 (422).
    """
    number = authorized_number(session, principal, number_text, Access.CONTRACT)
    problems: list[FieldProblem] = []
    if body.options is not None:
        problems.extend(_option_problems(body.options))
    if body.service_type is not None:
        for destination_set in number.destination_sets:
            pairs = [(item.number, item.weight) for item in destination_set.destinations]
            if destination_set_problems(body.service_type, pairs):
                problems.append(
                    FieldProblem(
                        "service_type",
                        "weight_range",
                        f"destination set {destination_set.name!r} has weights that a"
                        f" {body.service_type.value} number cannot have; change them first",
                    )
                )
    if problems:
        raise InvalidFields(problems)
    before = _contract_view(number)
    if body.service_type is not None:
        number.service_type = body.service_type
    if body.contracted_channels is not None:
        number.contracted_channels = body.contracted_channels
        number.channel_setting = min(number.channel_setting, body.contracted_channels)
    if body.options is not None:
        number.options = sorted(set(body.options))
    if body.strict_distribution is not None:
        number.strict_distribution = body.strict_distribution
    _commit(
        session,
        context,
        principal,
        number,
        "tollfree.contract",
        remote_address,
        before=before,
        after=_contract_view(number),
    )
    return number


# --- channels and after-hours announcement --------------------------------------------


def set_channels(
    session: Session,
    context: AppContext,
    principal: Principal,
    number_text: str,
    body: ChannelSettingUpdate,
    remote_address: str | None,
) -> TollFreeNumber:
    """Set the channel setting (ch数).

    Raises:
        InvalidFields: below 0 or above the contracted channels (422 naming
            `channel_setting`).
    """
    number = authorized_number(session, principal, number_text, Access.SETTINGS)
    problem = channel_setting_problem(body.channel_setting, number.contracted_channels)
    if problem is not None:
        raise InvalidFields([FieldProblem("channel_setting", "channel_setting", problem)])
    before = ChannelsPublic.of(number).model_dump(mode="json")
    number.channel_setting = body.channel_setting
    if body.no_answer_timeout_seconds is not None:
        number.no_answer_timeout_seconds = body.no_answer_timeout_seconds
    _commit(
        session,
        context,
        principal,
        number,
        "tollfree.channels",
        remote_address,
        before=before,
        after=ChannelsPublic.of(number).model_dump(mode="json"),
    )
    return number


def set_after_hours(
    session: Session,
    context: AppContext,
    principal: Principal,
    number_text: str,
    body: AfterHoursUpdate,
    remote_address: str | None,
) -> TollFreeNumber:
    """Choose the announcement after-hours schedules play (時間外案内)."""
    number = authorized_number(session, principal, number_text, Access.SETTINGS)
    before = AfterHoursPublic.of(number).model_dump(mode="json")
    number.after_hours_announcement = body.announcement
    _commit(
        session,
        context,
        principal,
        number,
        "tollfree.after_hours",
        remote_address,
        before=before,
        after=AfterHoursPublic.of(number).model_dump(mode="json"),
    )
    return number


# --- destination sets -----------------------------------------------------------------


def _destination_set(number: TollFreeNumber, name: str) -> TollFreeDestinationSet | None:
    return next((item for item in number.destination_sets if item.name == name), None)


def put_destination_set(
    session: Session,
    context: AppContext,
    principal: Principal,
    number_text: str,
    set_name: str,
    body: DestinationSetUpdate,
    remote_address: str | None,
) -> tuple[TollFreeDestinationSet, bool]:
    """Create or replace a whole destination set (operator only).

    Returns:
        The set and whether it was created.

    Raises:
        InvalidFields: a number, trunk, weight or the set's size is refused (422).
    """
    number = authorized_number(session, principal, number_text, Access.CONTRACT)
    problems: list[FieldProblem] = []
    pairs: list[tuple[str, int]] = []
    for index, destination in enumerate(body.destinations):
        try:
            national = normalize_national_number(destination.number)
        except ValueError as error:
            problems.append(
                FieldProblem(f"destinations[{index}].number", "telephone_number", str(error))
            )
            national = destination.number
        pairs.append((national, destination.weight))
    trunk_names = {destination.trunk for destination in body.destinations}
    trunks = {
        trunk.name: trunk
        for trunk in session.scalars(select(Trunk).where(Trunk.name.in_(trunk_names)))
        if trunk.tenant_id is None or trunk.tenant_id == number.tenant_id
    }
    for index, destination in enumerate(body.destinations):
        if destination.trunk not in trunks:
            problems.append(
                FieldProblem(
                    f"destinations[{index}].trunk",
                    "unknown_trunk",
                    "is no carrier trunk nor a trunk of the number's tenant",
                )
            )
    problems.extend(
        FieldProblem(problem.field, _rule_type(problem.field), problem.message)
        for problem in destination_set_problems(number.service_type, pairs)
    )
    if problems:
        raise InvalidFields(problems)
    destination_set = _destination_set(number, set_name)
    created = destination_set is None
    before = None
    if destination_set is None:
        destination_set = TollFreeDestinationSet(name=set_name, destinations=[])
        number.destination_sets.append(destination_set)
    else:
        before = DestinationSetPublic.of(destination_set).model_dump(mode="json")
        # Delete the old rows before inserting the new ones: (set, number) and
        # (set, position) are unique, and one flush would insert first.
        destination_set.destinations.clear()
        session.flush()
    for position, ((national, weight), destination) in enumerate(
        zip(pairs, body.destinations, strict=True), start=1
    ):
        destination_set.destinations.append(
            TollFreeDestination(
                position=position, number=national, weight=weight, trunk=trunks[destination.trunk]
            )
        )
    session.flush()
    _commit(
        session,
        context,
        principal,
        number,
        "tollfree.destination_set.update",
        remote_address,
        before=before,
        after=DestinationSetPublic.of(destination_set).model_dump(mode="json"),
    )
    return destination_set, created


def update_weights(
    session: Session,
    context: AppContext,
    principal: Principal,
    number_text: str,
    set_name: str,
    body: WeightsUpdate,
    remote_address: str | None,
) -> TollFreeDestinationSet:
    """Change the distribution weights of destinations already in a set (振分比率).

    Raises:
        NotFound: no such set.
        InvalidFields: a number not in the set, given twice, or a weight refused by the
            contract's service type (422 naming `weights[i].number` / `.weight`).
    """
    number = authorized_number(session, principal, number_text, Access.SETTINGS)
    destination_set = _destination_set(number, set_name)
    if destination_set is None:
        raise NotFound("no such destination set")
    by_number = {item.number: item for item in destination_set.destinations}
    problems: list[FieldProblem] = []
    # Destination number -> (its index in the request, its new weight).
    new_weights: dict[str, tuple[int, int]] = {}
    for index, weight in enumerate(body.weights):
        field = f"weights[{index}].number"
        try:
            national = normalize_national_number(weight.number)
        except ValueError as error:
            problems.append(FieldProblem(field, "telephone_number", str(error)))
            continue
        if national not in by_number:
            problems.append(
                FieldProblem(field, "unknown_destination", "is no destination of the set")
            )
        elif national in new_weights:
            problems.append(FieldProblem(field, "duplicate_destination", "is given twice"))
        else:
            new_weights[national] = (index, weight.weight)
    if problems:
        raise InvalidFields(problems)
    pairs = [
        (item.number, new_weights.get(item.number, (0, item.weight))[1])
        for item in destination_set.destinations
    ]
    for problem in destination_set_problems(number.service_type, pairs):
        match = _RULE_FIELD.match(problem.field)
        field = "weights"
        if match is not None:
            changed = new_weights.get(destination_set.destinations[int(match.group(1))].number)
            if changed is not None:
                field = f"weights[{changed[0]}].{match.group(2)}"
        problems.append(FieldProblem(field, _rule_type(problem.field), problem.message))
    if problems:
        raise InvalidFields(problems)
    before = DestinationSetPublic.of(destination_set).model_dump(mode="json")
    for destination in destination_set.destinations:
        if destination.number in new_weights:
            destination.weight = new_weights[destination.number][1]
    _commit(
        session,
        context,
        principal,
        number,
        "tollfree.weights",
        remote_address,
        before=before,
        after=DestinationSetPublic.of(destination_set).model_dump(mode="json"),
    )
    return destination_set


# --- schedules ------------------------------------------------------------------------


def _schedule(number: TollFreeNumber, name: str) -> TollFreeSchedule | None:
    return next((item for item in number.schedules if item.name == name), None)


def _stored_range_values(schedule: TollFreeSchedule) -> list[ScheduleRangeValue]:
    return [
        ScheduleRangeValue(
            schedule=schedule.name,
            action=schedule.action,
            kind=item.kind,
            weekday=item.weekday,
            day=None if item.day is None else datetime.date.fromisoformat(item.day),
            start_minute=item.start_minute,
            end_minute=item.end_minute,
        )
        for item in schedule.ranges
    ]


def put_schedule(
    session: Session,
    context: AppContext,
    principal: Principal,
    number_text: str,
    name: str,
    body: ScheduleIn,
    remote_address: str | None,
) -> tuple[TollFreeSchedule, bool]:
    """Create or replace a schedule (after-hours or destination-change activation times).

    Returns:
        The schedule and whether it was created.

    Raises:
        InvalidFields: a range is malformed or overlaps another (422 naming
            `ranges[i]...`), or the destination set is missing, unknown or not allowed.
    """
    number = authorized_number(session, principal, number_text, Access.SETTINGS)
    problems: list[FieldProblem] = []
    target_set: TollFreeDestinationSet | None = None
    if body.action is ScheduleAction.DESTINATION_CHANGE:
        if body.destination_set is None:
            problems.append(
                FieldProblem("destination_set", "missing", "is required for destination_change")
            )
        else:
            target_set = _destination_set(number, body.destination_set)
            if target_set is None:
                problems.append(
                    FieldProblem(
                        "destination_set",
                        "unknown_destination_set",
                        "is no destination set of the number",
                    )
                )
    elif body.destination_set is not None:
        problems.append(
            FieldProblem("destination_set", "not_allowed", "only a destination_change names a set")
        )
    new_values: list[ScheduleRangeValue] = []
    # id() of a value in `new_values` -> its index in `body.ranges` (values of two equal
    # ranges compare equal, so only their identity tells them apart).
    index_of: dict[int, int] = {}
    for index, item in enumerate(body.ranges):
        field = f"ranges[{index}]"
        range_problems: list[FieldProblem] = []
        if item.kind is ScheduleRangeKind.WEEKLY and item.weekday is None:
            range_problems.append(
                FieldProblem(f"{field}.weekday", "missing", "is required for weekly")
            )
        if item.kind is not ScheduleRangeKind.WEEKLY and item.weekday is not None:
            range_problems.append(
                FieldProblem(f"{field}.weekday", "not_allowed", "only a weekly range has one")
            )
        if item.kind is ScheduleRangeKind.DATE and item.date is None:
            range_problems.append(FieldProblem(f"{field}.date", "missing", "is required for date"))
        if item.kind is not ScheduleRangeKind.DATE and item.date is not None:
            range_problems.append(
                FieldProblem(f"{field}.date", "not_allowed", "only a date range has one")
            )
        start = end = None
        try:
            start = parse_time_of_day(item.start)
        except ValueError as error:
            range_problems.append(FieldProblem(f"{field}.start", "time_of_day", str(error)))
        try:
            end = parse_time_of_day(item.end, end=True)
        except ValueError as error:
            range_problems.append(FieldProblem(f"{field}.end", "time_of_day", str(error)))
        if start is not None and end is not None and start >= end:
            range_problems.append(
                FieldProblem(f"{field}.end", "time_range", "must be after the start")
            )
        problems.extend(range_problems)
        if range_problems or start is None or end is None:
            continue
        value = ScheduleRangeValue(
            schedule=name,
            action=body.action,
            kind=item.kind,
            weekday=item.weekday,
            day=item.date,
            start_minute=start,
            end_minute=end,
        )
        new_values.append(value)
        index_of[id(value)] = index
    if not problems:
        others = [
            value
            for schedule in number.schedules
            if schedule.name != name
            for value in _stored_range_values(schedule)
        ]
        for first, second in schedule_overlaps([*new_values, *others]):
            # Name a range of the new schedule: the later one when both are.
            ours = [value for value in (second, first) if id(value) in index_of]
            other = first if ours[0] is second else second
            problems.append(
                FieldProblem(
                    f"ranges[{index_of[id(ours[0])]}]",
                    "schedule_overlap",
                    f"overlaps {other.describe()}",
                )
            )
    if problems:
        raise InvalidFields(problems)
    schedule = _schedule(number, name)
    created = schedule is None
    before = None
    if schedule is None:
        schedule = TollFreeSchedule(name=name, action=body.action, ranges=[])
        number.schedules.append(schedule)
    else:
        before = SchedulePublic.of(schedule).model_dump(mode="json")
        schedule.ranges.clear()
    schedule.action = body.action
    schedule.destination_set = target_set
    schedule.enabled = body.enabled
    for item in body.ranges:
        schedule.ranges.append(
            TollFreeScheduleRange(
                kind=item.kind,
                weekday=item.weekday,
                day=None if item.date is None else item.date.isoformat(),
                start_minute=parse_time_of_day(item.start),
                end_minute=parse_time_of_day(item.end, end=True),
            )
        )
    session.flush()
    _commit(
        session,
        context,
        principal,
        number,
        "tollfree.schedule.update",
        remote_address,
        before=before,
        after=SchedulePublic.of(schedule).model_dump(mode="json"),
    )
    return schedule, created


def delete_schedule(
    session: Session,
    context: AppContext,
    principal: Principal,
    number_text: str,
    name: str,
    remote_address: str | None,
) -> None:
    """Delete a schedule. Raises NotFound for an unknown one."""
    number = authorized_number(session, principal, number_text, Access.SETTINGS)
    schedule = _schedule(number, name)
    if schedule is None:
        raise NotFound("no such schedule")
    before = SchedulePublic.of(schedule).model_dump(mode="json")
    number.schedules.remove(schedule)
    session.flush()
    _commit(
        session,
        context,
        principal,
        number,
        "tollfree.schedule.delete",
        remote_address,
        before=before,
        after=None,
    )


# --- designated areas -----------------------------------------------------------------


def set_designated_areas(
    session: Session,
    context: AppContext,
    principal: Principal,
    number_text: str,
    body: DesignatedAreas,
    remote_address: str | None,
) -> TollFreeNumber:
    """Replace the originating-area designation (発信地域指定).

    Raises:
        InvalidFields: an unknown prefecture or area code, or no area at all without
            `whole_country` (422).
    """
    number = authorized_number(session, principal, number_text, Access.SETTINGS)
    problems: list[FieldProblem] = []
    for kind, field, codes in (
        (AreaKind.PREFECTURE, "prefectures", body.prefectures),
        (AreaKind.AREA_CODE, "area_codes", body.area_codes),
    ):
        for index, code in enumerate(codes):
            problem = area_code_problem(kind, code)
            if problem is not None:
                problems.append(FieldProblem(f"{field}[{index}]", kind.value, problem))
    if not body.whole_country and not body.prefectures and not body.area_codes:
        problems.append(
            FieldProblem(
                "whole_country",
                "no_designated_area",
                "designate the whole country, or at least one prefecture or area code",
            )
        )
    if problems:
        raise InvalidFields(problems)
    before = DesignatedAreas.of(number).model_dump(mode="json")
    number.designated_areas.clear()
    session.flush()  # the (number, kind, code) rows may come back: delete them first
    for kind, codes in (
        (AreaKind.PREFECTURE, body.prefectures),
        (AreaKind.AREA_CODE, body.area_codes),
    ):
        for code in sorted(set(codes)):
            number.designated_areas.append(TollFreeDesignatedArea(kind=kind, code=code))
    number.designated_whole_country = body.whole_country
    number.allow_fixed = body.allow_fixed
    number.allow_mobile = body.allow_mobile
    number.allow_withheld = body.allow_withheld
    number.refusal_action = body.refusal_action
    session.flush()
    _commit(
        session,
        context,
        principal,
        number,
        "tollfree.designated_areas",
        remote_address,
        before=before,
        after=DesignatedAreas.of(number).model_dump(mode="json"),
    )
    return number


# --- account grants -------------------------------------------------------------------


def list_grants(session: Session, principal: Principal, number_text: str) -> list[Account]:
    """The accounts granted the number, by login name."""
    number = authorized_number(session, principal, number_text, Access.GRANTS)
    return list(
        session.scalars(
            select(Account)
            .join(TollFreeAccountGrant, TollFreeAccountGrant.account_id == Account.id)
            .where(TollFreeAccountGrant.tollfree_number_id == number.id)
            .order_by(Account.login)
        )
    )


def _tenant_account(session: Session, number: TollFreeNumber, login: str) -> Account:
    account = session.scalars(
        select(Account).where(Account.login == login, Account.tenant_id == number.tenant_id)
    ).one_or_none()
    if account is None:
        raise NotFound("no such account in the number's tenant")
    return account


def put_grant(
    session: Session,
    context: AppContext,
    principal: Principal,
    number_text: str,
    login: str,
    remote_address: str | None,
) -> tuple[Account, bool]:
    """Grant the number to an account of its tenant.

    Returns:
        The account and whether the grant is new.

    Raises:
        NotFound: `login` is no account of the number's tenant.
        InvalidFields: the account's role cannot be granted numbers, or the number has
            its 50 accounts already (422 naming `login`).
    """
    number = authorized_number(session, principal, number_text, Access.GRANTS)
    account = _tenant_account(session, number, login)
    if account.role not in _GRANTABLE_ROLES:
        raise InvalidFields(
            [
                FieldProblem(
                    "login",
                    "account_role",
                    "only user and tollfree_viewer accounts are granted toll-free numbers",
                )
            ],
            location="path",
        )
    existing = session.scalars(
        select(TollFreeAccountGrant).where(
            TollFreeAccountGrant.tollfree_number_id == number.id,
            TollFreeAccountGrant.account_id == account.id,
        )
    ).one_or_none()
    if existing is None:
        granted = session.scalar(
            select(func.count(TollFreeAccountGrant.id)).where(
                TollFreeAccountGrant.tollfree_number_id == number.id
            )
        )
        if (granted or 0) >= MAX_ACCOUNTS_PER_TOLLFREE_NUMBER:
            raise InvalidFields(
                [
                    FieldProblem(
                        "login",
                        "too_many_accounts",
                        f"a toll-free number is granted to at most"
                        f" {MAX_ACCOUNTS_PER_TOLLFREE_NUMBER} accounts",
                    )
                ],
                location="path",
            )
        session.add(TollFreeAccountGrant(tollfree_number_id=number.id, account_id=account.id))
        session.flush()
    view = GrantPublic.of(account).model_dump(mode="json")
    _commit(
        session,
        context,
        principal,
        number,
        "tollfree.account.grant",
        remote_address,
        before=None if existing is None else view,
        after=view,
        topic=ACCOUNTS,
    )
    return account, existing is None


def delete_grant(
    session: Session,
    context: AppContext,
    principal: Principal,
    number_text: str,
    login: str,
    remote_address: str | None,
) -> None:
    """Revoke an account's grant. Raises NotFound when it has none."""
    number = authorized_number(session, principal, number_text, Access.GRANTS)
    account = _tenant_account(session, number, login)
    grant = session.scalars(
        select(TollFreeAccountGrant).where(
            TollFreeAccountGrant.tollfree_number_id == number.id,
            TollFreeAccountGrant.account_id == account.id,
        )
    ).one_or_none()
    if grant is None:
        raise NotFound("this account has no grant on the number")
    session.delete(grant)
    session.flush()
    _commit(
        session,
        context,
        principal,
        number,
        "tollfree.account.revoke",
        remote_address,
        before=GrantPublic.of(account).model_dump(mode="json"),
        after=None,
        topic=ACCOUNTS,
    )
