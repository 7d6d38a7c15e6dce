"""Alarms across gateways (scope-filtered), notification rules and the notification record."""

from __future__ import annotations

from aiohttp import web

from cloud.appkeys import ALARMS, NOTIFIER, PRINCIPAL
from cloud.http import Route, audit, json_body, json_error, sees_gateway
from cloud.notify import RuleError


async def active_alarms(request: web.Request) -> web.Response:
    alarms = request.app[ALARMS].active(lambda gateway_id: sees_gateway(request, gateway_id))
    return web.json_response({"alarms": alarms})


async def add_rule(request: web.Request) -> web.Response:
    body = await json_body(request)
    try:
        rule = request.app[NOTIFIER].add_rule(body, request.get(PRINCIPAL, "api"))
    except (RuleError, ValueError) as err:
        return json_error(400, "bad_request", str(err))
    audit(request, "notify.rule_add", target=f"rule:{rule.id}", rule=body)
    return web.json_response({"id": rule.id, "name": rule.name}, status=201)


async def list_rules(request: web.Request) -> web.Response:
    rules = request.app[NOTIFIER].rules()
    return web.json_response(
        {
            "rules": [
                {
                    "id": r.id,
                    "name": r.name,
                    "scopes": sorted(r.scopes),
                    "min_priority": r.min_priority,
                    "hours": f"{r.hours[0]}-{r.hours[1]}",
                    "recipients": [vars(x) for x in r.recipients],
                    "escalate_after_s": r.escalate_after_s,
                    "escalate_to": [vars(x) for x in r.escalate_to],
                }
                for r in rules
            ]
        }
    )


async def notifications(request: web.Request) -> web.Response:
    return web.json_response({"notifications": request.app[NOTIFIER].records()})


ALARM_ROUTES: tuple[Route, ...] = (
    Route("GET", "/v1/alarms", active_alarms, "data.read", "Active alarms in scope, worst first"),
    Route("POST", "/v1/notification-rules", add_rule, "user.admin", "Add an alarm notification rule"),
    Route("GET", "/v1/notification-rules", list_rules, "user.admin", "Notification rules"),
    Route("GET", "/v1/notifications", notifications, "user.admin", "Every notification: sent, failed, suppressed"),
)
