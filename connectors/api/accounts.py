"""``/v1/accounts/{domain}``: RevOps says which company belongs to which owner, team and tier.

Accounts are keyed by the company's registrable domain: ``www.acme.co.uk`` and ``acme.co.uk``
name the same account, and the answers always show the key. A change is a command on
``account.commands`` (the account agent owns each domain), so every worker sees it in order
with the leads it matches. A ``PUT`` naming an ``owner`` but no ``team`` takes the owner's
current team from the rep directory (relayed to the worker that owns the rep).
"""
from __future__ import annotations

from typing import Annotated

from aiohttp import web
from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError

from connectors.api.context import authenticate, context, read_json
from connectors.api.errors import ApiError, json_response
from connectors.lead_input import FieldError
from rules.account_book import PutAccount, RemoveAccount
from rules.accounts import Account, account_domain_problem, normalize_domain

__all__ = ["routes", "account_view", "ACCOUNT_INPUT_MODEL"]

routes = web.RouteTableDef()

_Id = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]


class _AccountIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: Annotated[str, StringConstraints(max_length=200)] = ""
    owner: _Id | None = None
    team: _Id | None = None
    tier: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None


#: The request model, for the OpenAPI document.
ACCOUNT_INPUT_MODEL = _AccountIn


def _domain(request: web.Request) -> str:
    raw = request.match_info["domain"]
    try:
        return normalize_domain(raw[:253])
    except ValueError as exc:
        raise ApiError(422, "invalid", "bad account domain", [FieldError("domain", str(exc))]) from None


def _invalid(exc: ValidationError) -> ApiError:
    fields = []
    for err in exc.errors():
        name = ".".join(str(p) for p in err["loc"]) or "(body)"
        fields.append(FieldError(name, "unknown field" if err["type"] == "extra_forbidden" else err["msg"]))
    return ApiError(422, "invalid", "the account is not valid", fields)


def account_view(account: Account) -> dict[str, object]:
    return {"domain": account.domain, "name": account.name, "owner": account.owner, "team": account.team,
            "tier": account.tier, "updated_at": account.updated_at}


@routes.put("/accounts/{domain}")
async def put_account(request: web.Request) -> web.Response:
    authenticate(request, "admin")
    ctx = context(request)
    domain = _domain(request)
    # Only a PUT: an account made before this check can still be read and deleted.
    if (problem := account_domain_problem(domain)) is not None:
        raise ApiError(422, "invalid", "bad account domain", [FieldError("domain", problem)])
    try:
        body = _AccountIn.model_validate(await read_json(request))
    except ValidationError as exc:
        raise _invalid(exc) from None
    team = body.team
    if body.owner is not None:
        # The owner's team is known where the rep directory keeps the owner: answer from there.
        forwarded = await ctx.engine.forward_to_owner("rep", body.owner, request)
        if forwarded is not None:
            return forwarded
        rep = ctx.engine.rep(body.owner)
        if rep is None and team is None:
            raise ApiError(422, "invalid", "the account is not valid", [FieldError(
                "owner", f"no rep {body.owner}; create the rep first (PUT /v1/reps/{body.owner}) or give the team")])
        if rep is not None and team is not None and rep.team_id != team:
            raise ApiError(422, "invalid", "the account is not valid", [FieldError(
                "team", f"rep {body.owner} is in team {rep.team_id}, not {team}")])
        team = team or (rep.team_id if rep is not None else None)
    now = ctx.clock.now()
    account = Account(domain=domain, name=body.name, owner=body.owner, team=team, tier=body.tier, updated_at=now)
    await ctx.engine.send_account_command(domain, PutAccount(domain=domain, account=account, at=now))
    return json_response({**account_view(account), "status": "accepted"}, status=202)


@routes.get("/accounts/{domain}")
async def get_account(request: web.Request) -> web.Response:
    authenticate(request, "read")
    ctx = context(request)
    domain = _domain(request)
    forwarded = await ctx.engine.forward_to_owner("account", domain, request)
    if forwarded is not None:
        return forwarded
    account = ctx.engine.account(domain)
    if account is None:
        raise ApiError(404, "not_found", f"no account {domain}")
    return json_response(account_view(account))


@routes.delete("/accounts/{domain}")
async def delete_account(request: web.Request) -> web.Response:
    authenticate(request, "admin")
    ctx = context(request)
    domain = _domain(request)
    forwarded = await ctx.engine.forward_to_owner("account", domain, request)
    if forwarded is not None:
        return forwarded
    if ctx.engine.account(domain) is None:
        raise ApiError(404, "not_found", f"no account {domain}")
    await ctx.engine.send_account_command(domain, RemoveAccount(domain=domain, at=ctx.clock.now()))
    return json_response({"domain": domain, "status": "accepted"}, status=202)
