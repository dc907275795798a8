"""Webhooks (admin): where to send which events, and what became of each delivery."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from core.api import ERRORS, DeliveryOut, DeliveryPage, WebhookCreate, WebhookOut
from core.protocol import DbId
from server import webhooks
from server.deps import DB, Admin

router = APIRouter(prefix="/webhooks", tags=["webhooks"], responses=ERRORS)


@router.post("", status_code=201, response_model=WebhookOut)
def create_webhook(body: WebhookCreate, db: DB, who: Admin) -> WebhookOut:
    return WebhookOut.model_validate(webhooks.create(db, body, who.actor), from_attributes=True)


@router.get("", response_model=list[WebhookOut])
def list_webhooks(db: DB, _: Admin) -> list[WebhookOut]:
    return [WebhookOut.model_validate(w, from_attributes=True) for w in webhooks.list_webhooks(db)]


@router.get("/{webhook_id}", response_model=WebhookOut)
def get_webhook(webhook_id: DbId, db: DB, _: Admin) -> WebhookOut:
    return WebhookOut.model_validate(webhooks.get(db, webhook_id), from_attributes=True)


@router.delete("/{webhook_id}", status_code=204)
def delete_webhook(webhook_id: DbId, db: DB, _: Admin) -> Response:
    webhooks.remove(db, webhooks.get(db, webhook_id))
    return Response(status_code=204)


@router.get("/{webhook_id}/deliveries", response_model=DeliveryPage)
def list_deliveries(webhook_id: DbId, db: DB, _: Admin, after: Annotated[int, Query(ge=0, le=2**62)] = 0,
                    limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> DeliveryPage:
    webhooks.get(db, webhook_id)
    rows = webhooks.deliveries(db, webhook_id, after=after, limit=limit)
    return DeliveryPage(items=[DeliveryOut.model_validate(r, from_attributes=True) for r in rows],
                        next_cursor=str(rows[-1].id) if len(rows) == limit else None)
