"""Create the tables of the authorization code and refresh token grants (issue 9): codes,
refresh-token families, refresh tokens, remembered consents.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _at(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "oauth2_codes",
        sa.Column("code_hash", sa.LargeBinary(), nullable=False),
        sa.Column("client_id", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("redirect_uri", sa.Text(), nullable=False),
        sa.Column("redirect_uri_given", sa.Boolean(), nullable=False),
        sa.Column("scopes", sa.Text(), nullable=False),
        sa.Column("code_challenge", sa.Text(), nullable=False),
        _at("created_at"),
        _at("expires_at"),
        _at("used_at", nullable=True),
        sa.Column("family_id", sa.Text(), nullable=True),
        sa.Column("access_jti", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("code_hash", name="pk_oauth2_codes"),
    )
    op.create_table(
        "oauth2_token_families",
        sa.Column("family_id", sa.Text(), nullable=False),
        sa.Column("client_id", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=False),
        _at("created_at"),
        _at("rotated_at", nullable=True),
        _at("revoked_at", nullable=True),
        sa.PrimaryKeyConstraint("family_id", name="pk_oauth2_token_families"),
    )
    op.create_table(
        "oauth2_refresh_tokens",
        sa.Column("token_hash", sa.LargeBinary(), nullable=False),
        sa.Column("family_id", sa.Text(), nullable=False),
        sa.Column("client_id", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("scopes", sa.Text(), nullable=False),
        _at("created_at"),
        _at("expires_at"),
        _at("used_at", nullable=True),
        sa.Column("access_jti", sa.Text(), nullable=False),
        _at("access_expires_at"),
        sa.PrimaryKeyConstraint("token_hash", name="pk_oauth2_refresh_tokens"),
    )
    op.create_index("ix_oauth2_refresh_tokens_family_id", "oauth2_refresh_tokens", ["family_id"])
    op.create_table(
        "oauth2_consents",
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("client_id", sa.Text(), nullable=False),
        sa.Column("scopes", sa.Text(), nullable=False),
        _at("granted_at"),
        sa.PrimaryKeyConstraint("user_id", "client_id", name="pk_oauth2_consents"),
    )


def downgrade() -> None:
    op.drop_table("oauth2_consents")
    op.drop_index("ix_oauth2_refresh_tokens_family_id", "oauth2_refresh_tokens")
    op.drop_table("oauth2_refresh_tokens")
    op.drop_table("oauth2_token_families")
    op.drop_table("oauth2_codes")
