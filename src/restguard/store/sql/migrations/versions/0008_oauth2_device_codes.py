"""Create the table of the device authorization grant (RFC 8628): device codes, by hash, with
their user code unique among pending ones.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _at(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "oauth2_device_codes",
        sa.Column("device_code_hash", sa.LargeBinary(), nullable=False),
        sa.Column("user_code", sa.Text(), nullable=False),
        sa.Column("client_id", sa.Text(), nullable=False),
        sa.Column("scopes", sa.Text(), nullable=False),
        _at("created_at"),
        _at("expires_at"),
        sa.Column("interval", sa.Integer(), nullable=False),
        _at("last_polled_at", nullable=True),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=True),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("granted_scopes", sa.Text(), nullable=True),
        _at("used_at", nullable=True),
        sa.PrimaryKeyConstraint("device_code_hash", name="pk_oauth2_device_codes"),
    )
    pending = sa.text("status = 'pending'")
    op.create_index(
        "ux_oauth2_device_codes_pending_user_code",
        "oauth2_device_codes",
        ["user_code"],
        unique=True,
        sqlite_where=pending,
        postgresql_where=pending,
    )
    op.create_index("ix_oauth2_device_codes_expires_at", "oauth2_device_codes", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_oauth2_device_codes_expires_at", "oauth2_device_codes")
    op.drop_index("ux_oauth2_device_codes_pending_user_code", "oauth2_device_codes")
    op.drop_table("oauth2_device_codes")
