"""``/v1/reps`` and ``/v1/teams``: RevOps changes reps at runtime; anyone reads a team's load."""
from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from connectors.api.context import ApiContext, authenticate, context, read_json
from connectors.api.errors import ApiError, json_response
from connectors.auth import Scope
from connectors.lead_input import FieldError
from connectors.netguard import validate_webhook_url
from connectors.rep_fields import (
    HolidaysCountry,
    Identifier,
    TimeZoneName,
    WebhookSecret,
    WebhookUrl,
    WorkingHours,
    identifier_problem,
)
from connectors.webhooks import generate_secret
from rules.commands import ChangePresence, PutRep, RepProfile, RetireRep
from rules.reps import RepEntry, latest_profile
from rules.roster import (
    MAX_EMAIL_LENGTH,
    MAX_NAME_LENGTH,
    MAX_PLACES,
    MAX_TAG_LENGTH,
    MAX_TAGS,
    MAX_TERRITORIES,
)
from rules.team import TeamState, admission_problem
from rules.territory import expand_territories, territory_problem

__all__ = ["routes", "rep_view", "team_view", "REP_INPUT_MODEL", "PRESENCE_INPUT_MODEL"]

routes = web.RouteTableDef()

_Tag = Annotated[str, StringConstraints(min_length=1, max_length=MAX_TAG_LENGTH)]


class _RepIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    team: Identifier
    name: Annotated[str, StringConstraints(max_length=MAX_NAME_LENGTH)] = ""
    capacity: Annotated[int, Field(ge=1, le=1000)] = 5
    daily_cap: Annotated[int, Field(ge=1)] | None = None
    weight: Annotated[int, Field(ge=1, le=100)] = 1
    skills: Annotated[list[_Tag], Field(max_length=MAX_TAGS)] = []
    languages: Annotated[list[_Tag], Field(max_length=MAX_TAGS)] = []
    territories: Annotated[list[_Tag], Field(max_length=MAX_TERRITORIES)] = []
    #: Required with working_hours or holidays_country (``_timezone_problem``); else UTC.
    timezone: TimeZoneName = "UTC"
    webhook_url: WebhookUrl | None = None  # the YAML's rep takes the same (connectors/rep_fields.py)
    webhook_secret: WebhookSecret | None = None
    email: Annotated[str, StringConstraints(max_length=MAX_EMAIL_LENGTH)] | None = None
    weekly_cap: Annotated[int, Field(ge=1)] | None = None
    working_hours: WorkingHours = {}
    holidays_country: HolidaysCountry | None = None


class _PresenceIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    status: Literal["available", "busy", "offline"]


#: The request models, for the OpenAPI document.
REP_INPUT_MODEL = _RepIn
PRESENCE_INPUT_MODEL = _PresenceIn


def _invalid(exc: ValidationError, what: str) -> ApiError:
    fields = []
    for err in exc.errors():
        name = ".".join(str(p) for p in err["loc"]) or "(body)"
        fields.append(FieldError(name, "unknown field" if err["type"] == "extra_forbidden" else err["msg"]))
    return ApiError(422, "invalid", f"the {what} is not valid", fields)


#: What each method on ``/v1/reps/{rep_id}...`` needs (else: POST .../presence). aiohttp's
#: ``routes.get`` also answers HEAD, which reads as GET does (it needed ``work`` until review s16-b L2).
_SCOPES: dict[str, Scope] = {"PUT": "admin", "DELETE": "admin", "GET": "read", "HEAD": "read"}


async def _rep_owner(request: web.Request) -> tuple[ApiContext, str, web.Response | None]:
    """Authenticate a ``/v1/reps/{rep_id}...`` request and relay it to the rep's owner (as
    ``lead_owner`` does for leads): the owner's answer when relayed, ``None`` when this worker owns it."""
    authenticate(request, _SCOPES.get(request.method, "work"))
    ctx = context(request)
    rep_id, problem = _rep_id(request)
    forwarded = await ctx.engine.forward_to_owner("rep", rep_id, request)
    if forwarded is None and problem is not None and ctx.engine.rep(rep_id) is None:
        # A legacy id reaches only a rep stored under it (the owner's directory says so).
        raise ApiError(422, "invalid", "bad rep id", [FieldError("rep_id", problem)])
    return ctx, rep_id, forwarded


def _rep_id(request: web.Request) -> tuple[str, str | None]:
    """The path's rep id, and what is wrong with it if it is a legacy id that GET and DELETE still take.

    The YAML's rule for ids (connectors/rep_fields.py): ASCII only, so no lookalike of a rep's id.
    Before 8a8c8a7 the API took any ``str.isalnum`` letter or digit (a Cyrillic "А", Arabic digits),
    and reps were stored under such ids: GET and DELETE still reach one of those if it exists, so an
    admin can see it and retire it. Every other use of such an id is a 422 naming ``rep_id``.
    """
    rep_id = request.match_info["rep_id"]
    problem = identifier_problem(rep_id)
    if problem is None:
        return rep_id, None
    if request.method in ("GET", "DELETE") and _legacy_id(rep_id):
        return rep_id, problem
    raise ApiError(422, "invalid", "bad rep id", [FieldError("rep_id", problem)])


def _legacy_id(rep_id: str) -> bool:
    """Whether ``rep_id`` passed the API's rule before 8a8c8a7: 1-64 ``str.isalnum`` characters, '_', '.', '-'."""
    return 0 < len(rep_id) <= 64 and all(c.isalnum() or c in "_.-" for c in rep_id)


@routes.put("/reps/{rep_id}")
async def put_rep(request: web.Request) -> web.Response:
    ctx, rep_id, forwarded = await _rep_owner(request)
    if forwarded is not None:
        return forwarded
    try:
        rep = _RepIn.model_validate(await read_json(request))
    except ValidationError as exc:
        raise _invalid(exc, "rep") from None
    problems = []
    if rep.webhook_url is not None:
        problem = validate_webhook_url(rep.webhook_url, allow_private=ctx.webhook_allow_private)
        if problem:
            problems.append(FieldError("webhook_url", problem))
    # The YAML's check (rules/territory.py): a territory that is no region, ISO country or state
    # would match no lead with a place, and the rep would never be eligible for one.
    problems += [FieldError(f"territories[{i}]", problem) for i, territory in enumerate(rep.territories)
                 if (problem := territory_problem(territory, ctx.regions)) is not None]
    places = expand_territories(rep.territories, ctx.regions)
    if len(places) > MAX_PLACES:
        problems.append(FieldError("territories", f"stand for {len(places)} places once each region is replaced by "
                                                  f"its countries; at most {MAX_PLACES}"))
    known = ctx.engine.rep(rep_id)
    zone_problem = _timezone_problem(rep, _stored_profile(ctx, rep_id, known))
    if zone_problem is not None:
        problems.append(FieldError("timezone", zone_problem))
    if problems:
        raise ApiError(422, "invalid", "the rep is not valid", problems)
    generated = None
    secret = rep.webhook_secret
    if secret is None and known is None:
        # A new rep without a secret gets one, returned this once; an update keeps the old one.
        secret = generated = generate_secret()
    profile = RepProfile(
        rep_id=rep_id, team_id=rep.team, name=rep.name or rep_id, capacity=rep.capacity, daily_cap=rep.daily_cap,
        weight=rep.weight, skills=tuple(rep.skills), languages=tuple(rep.languages),
        territories=places, timezone=rep.timezone, webhook_url=rep.webhook_url,
        webhook_secret=secret, email=rep.email, weekly_cap=rep.weekly_cap,
        working_hours={k: tuple(v) for k, v in rep.working_hours.items()}, holidays_country=rep.holidays_country,
    )
    # An existing rep keeps what the request leaves out, as their secret always was kept: a PUT
    # that names only the capacity must not drop the rep's webhook, name or skills.
    keep = () if known is None else tuple(
        "team_id" if name == "team" else name for name in _RepIn.model_fields if name not in rep.model_fields_set)
    _check_room(ctx, profile, latest_profile(known), keep)
    await ctx.engine.send_rep_command(rep_id, PutRep(rep_id=rep_id, profile=profile, at=ctx.clock.now(), keep=keep))
    body: dict[str, object] = {"rep_id": rep_id, "team": rep.team, "status": "accepted",
                               "created": known is None}
    if generated is not None:
        body["webhook_secret"] = generated
    return json_response(body, status=202)


def _stored_profile(ctx: ApiContext, rep_id: str, known: RepEntry | None) -> RepProfile | None:
    """The rep's profile as last sent to their team, which a partial PUT's left-out fields keep: the
    change still waiting for the team's answer, if any, as the directory fills from it."""
    if known is None:
        return None
    latest = latest_profile(known)
    if latest is not None:
        return latest
    team = ctx.engine.team(known.team_id)  # an entry from before the directory kept profiles
    rep = team.reps.get(rep_id) if team is not None else None
    return rep.profile if rep is not None else None


def _timezone_problem(rep: _RepIn, stored: RepProfile | None) -> str | None:
    """Why the rep's working hours or holidays would be read in a time zone nobody gave, or ``None``.

    Both are read in the rep's ``timezone``, which defaults to UTC: a Sydney rep given
    mon-fri 09:00-17:00 and no timezone got leads at 20:00 Sydney time and none in their day. A
    PUT that leaves ``timezone`` out keeps the stored one (as every field it leaves out): that
    one counts when it is not the default, or when the stored profile already had hours or
    holidays (they have been read in it all along, and the PUT changes only them).
    """
    given = rep.model_fields_set
    if "timezone" in given:
        return None
    hours = rep.working_hours if "working_hours" in given else (stored.working_hours if stored else {})
    country = rep.holidays_country if "holidays_country" in given else (stored.holidays_country if stored else None)
    if not hours and country is None:
        return None
    if stored is not None and (stored.timezone != "UTC" or stored.working_hours or stored.holidays_country):
        return None
    return ("required with working_hours or holidays_country, which are read in it: an IANA name such as "
            "'Australia/Sydney' (or 'UTC', if that is meant)")


def _check_room(ctx: ApiContext, profile: RepProfile, before: RepProfile | None, keep: tuple[str, ...]) -> None:
    """A 422 naming ``team`` when the team, as this worker sees it, would refuse the rep: it has
    ``MAX_REPS`` reps, or its state would outgrow ``STATE_BYTES_BUDGET`` (``rules.team``).

    The team's owner may be another worker (then nothing is seen here), and PUTs may race: the
    team checks again when it applies the rep and keeps what it refused in ``refused_reps``
    (``GET /v1/teams/{team_id}``).

    A team absent from tables that cannot be believed (a stop or a rebalance begun since the rep's
    ownership was checked) is a 503 for the engine, meant for a key this worker owns; the team here
    usually belongs to another worker, and this check is only the early answer: it is skipped,
    as for a team seen nowhere, and the PUT goes on (s16 review).
    """
    try:
        state = ctx.engine.team(profile.team_id)
    except ApiError as exc:
        if exc.status != 503:
            raise
        return
    if state is None:
        return
    if keep and before is not None:
        # What the team will hold: the fields the update leaves out keep their value (rules.reps).
        profile = replace(profile, **{name: getattr(before, name) for name in keep if name != "team_id"})
    problem = admission_problem(state, profile)
    if problem is not None:
        raise ApiError(422, "invalid", "the team cannot take this rep", [FieldError("team", problem)])


@routes.delete("/reps/{rep_id}")
async def delete_rep(request: web.Request) -> web.Response:
    """Retire a rep: no new leads; the leads they hold stay theirs until released. A PUT brings them back."""
    ctx, rep_id, forwarded = await _rep_owner(request)
    if forwarded is not None:
        return forwarded
    if ctx.engine.rep(rep_id) is None:
        raise ApiError(404, "not_found", f"no rep {rep_id}")
    await ctx.engine.send_rep_command(rep_id, RetireRep(rep_id=rep_id, at=ctx.clock.now(), reason="retired through the API"))
    return json_response({"rep_id": rep_id, "status": "retired"}, status=202)


@routes.get("/reps/{rep_id}")
async def get_rep(request: web.Request) -> web.Response:
    """The rep as the directory knows them: team, retirement, a move waiting or refused; no secret."""
    ctx, rep_id, forwarded = await _rep_owner(request)
    if forwarded is not None:
        return forwarded
    entry = ctx.engine.rep(rep_id)
    if entry is None:
        raise ApiError(404, "not_found", f"no rep {rep_id}")
    return json_response(rep_view(entry))


def rep_view(entry: RepEntry) -> dict[str, object]:
    """A directory entry for ``GET /v1/reps/{rep_id}``: never the webhook secret nor the e-mail.

    ``in_team``: whether ``team`` holds the rep as a member, as its last answer said; a new rep it
    has not taken yet (``pending``) or refused (``refused``) is in no team and shows no profile.
    """
    body: dict[str, object] = {
        "rep_id": entry.rep_id, "team": entry.team_id, "status": "retired" if entry.retired else "active",
        "updated_at": entry.updated_at, "held_elsewhere": entry.held_elsewhere, "in_team": entry.in_team,
    }
    if entry.retired is not None:
        body["retired_by"] = entry.retired
    p = entry.profile
    if p is not None and entry.member:  # a retired rep: the profile they had in the team, if it ever held them
        body.update({"name": p.name, "capacity": p.capacity, "daily_cap": p.daily_cap, "weekly_cap": p.weekly_cap,
                     "weight": p.weight, "skills": list(p.skills), "languages": list(p.languages),
                     "territories": list(p.territories), "timezone": p.timezone,
                     "webhook_configured": bool(p.webhook_url and p.webhook_secret)})
    moving = entry.moving
    if moving is not None:
        # Moving: the new team has not answered yet; the rep is still the team's above.
        body["moving_to"] = {"team": moving.team_id, "since": moving.since}
    asked_here = entry.question_here or entry.unanswered
    if asked_here is not None:
        # A new rep or a change the team has not answered yet: the rep is as above until it does.
        body["pending"] = {"team": asked_here.team_id, "since": asked_here.since}
    if entry.refused is not None:
        # The last new rep or change the team refused (full, or too big): the team holds what is above.
        body["refused"] = {"team": entry.refused.team_id, "reason": entry.refused.reason, "at": entry.refused.at}
    if entry.move_refused is not None:
        # The last move the new team refused (full, or too big): the rep stayed in their team.
        refused = entry.move_refused
        body["move_refused"] = {"team": refused.team_id, "reason": refused.reason, "at": refused.at}
    return body


@routes.post("/reps/{rep_id}/presence")
async def set_presence(request: web.Request) -> web.Response:
    ctx, rep_id, forwarded = await _rep_owner(request)
    if forwarded is not None:
        return forwarded
    try:
        presence = _PresenceIn.model_validate(await read_json(request))
    except ValidationError as exc:
        raise _invalid(exc, "presence") from None
    known = ctx.engine.rep(rep_id)
    if known is None:
        raise ApiError(404, "not_found", f"no rep {rep_id}; create it with PUT /v1/reps/{rep_id} first")
    if known.retired is not None:
        raise ApiError(404, "not_found", f"rep {rep_id} is retired; PUT /v1/reps/{rep_id} brings them back")
    await ctx.engine.send_rep_command(rep_id, ChangePresence(rep_id=rep_id, status=presence.status,
                                                             at=ctx.clock.now()))
    return json_response({"rep_id": rep_id, "presence": presence.status, "status": "accepted"}, status=202)


def team_view(state: TeamState) -> dict[str, object]:
    """Roster, load against capacity, presence and queue depth; never webhook secrets."""
    reps = []
    for rep in sorted(state.reps.values(), key=lambda r: r.rep_id):
        p = rep.profile
        # open_leads is what eligibility counts against the capacity (rules.roster.RepState): this
        # team's leads plus held_elsewhere, those the rep still holds in teams they left.
        reps.append({
            "rep_id": p.rep_id, "name": p.name, "presence": rep.presence, "open_leads": rep.open_leads,
            "held_elsewhere": rep.held_elsewhere,
            "capacity": p.capacity, "weight": p.weight, "assigned_total": rep.assigned_total,
            "last_assigned_at": rep.last_assigned_at, "webhook_configured": bool(p.webhook_url and p.webhook_secret),
            "skills": list(p.skills), "languages": list(p.languages), "territories": list(p.territories),
            "timezone": p.timezone, "departed": rep.departed,
        })
    # Reps the team refused after a 202 (full, or its state too big to write): shown while any.
    refused = [{"rep_id": r.rep_id, "reason": r.reason, "at": r.at} for r in state.refused_reps]
    # As the team gauges (streams/agents/observe.py team_figures): a departed rep's leads are still
    # this team's open leads, but their capacity and presence belong to their new team. The team's
    # open_leads are its own (load), never leads its reps hold in other teams.
    members = [r for r in state.reps.values() if not r.departed]
    available = [r for r in members if r.presence == "available"]
    return {
        "team_id": state.team_id, "reps": reps,
        "open_leads": sum(r.load for r in state.reps.values()),
        "capacity": sum(r.profile.capacity for r in members),
        "available_capacity": sum(max(r.profile.capacity - r.open_leads, 0) for r in available),
        "reps_available": len(available), "queue_depth": state.queue_depth, "routed_total": state.routed_total,
        **({"refused_reps": refused} if refused else {}),
    }


@routes.get("/teams/{team_id}")
async def get_team(request: web.Request) -> web.Response:
    authenticate(request, "read")
    ctx = context(request)
    team_id = request.match_info["team_id"]
    forwarded = await ctx.engine.forward_to_owner("team", team_id, request)
    if forwarded is not None:
        return forwarded
    state = ctx.engine.team(team_id)
    if state is None:
        raise ApiError(404, "not_found", f"no team {team_id} (a team exists once it has a rep or a lead)")
    return json_response({**team_view(state), "sla": ctx.engine.team_sla(team_id)})
