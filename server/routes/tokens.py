"""Token administration (admin role)."""

from __future__ import annotations

from fastapi import APIRouter

from core.protocol import DbId
from server import auth
from server.deps import DB, Admin
from core.api import ERRORS, TokenCreate, TokenCreated, TokenOut

router = APIRouter(prefix="/tokens", tags=["tokens"], responses=ERRORS)


@router.post("", status_code=201, response_model=TokenCreated)
def create_token(body: TokenCreate, db: DB, _: Admin) -> TokenCreated:
    row, token = auth.create_token(db, body.name, body.role)
    return TokenCreated(**TokenOut.model_validate(row, from_attributes=True).model_dump(), token=token)


@router.get("", response_model=list[TokenOut])
def list_tokens(db: DB, _: Admin) -> list[TokenOut]:
    return [TokenOut.model_validate(r, from_attributes=True) for r in auth.list_tokens(db)]


@router.delete("/{token_id}", response_model=TokenOut)
def revoke_token(token_id: DbId, db: DB, _: Admin) -> TokenOut:
    row = auth.revoke_token(db, token_id)
    return TokenOut.model_validate(row, from_attributes=True)
