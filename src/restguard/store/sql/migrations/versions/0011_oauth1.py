"""Create the tables of OAuth 1.0a (RFC 5849; issue 11): ``oauth1_consumers`` (their secret
sealed), ``oauth1_tokens`` (temporary and token credentials, their secret sealed) and
``oauth1_nonces`` (single-use nonces).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-20
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _at(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "oauth1_consumers",
        sa.Column("consumer_key", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("sealed_secret", sa.LargeBinary(), nullable=False),
        sa.Column("scopes", sa.Text(), nullable=False),
        sa.Column("callback", sa.Text(), nullable=True),
        sa.Column("signature_methods", sa.Text(), nullable=False),
        sa.Column("rsa_public_key", sa.LargeBinary(), nullable=True),
        _at("created_at"),
        _at("revoked_at", nullable=True),
        sa.PrimaryKeyConstraint("consumer_key", name="pk_oauth1_consumers"),
    )
    op.create_table(
        "oauth1_tokens",
        sa.Column("token", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("consumer_key", sa.Text(), nullable=False),
        sa.Column("sealed_secret", sa.LargeBinary(), nullable=False),
        sa.Column("scopes", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=True),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("callback", sa.Text(), nullable=True),
        sa.Column("verifier_hash", sa.LargeBinary(), nullable=True),
        _at("created_at"),
        _at("expires_at", nullable=True),
        _at("used_at", nullable=True),
        _at("revoked_at", nullable=True),
        sa.PrimaryKeyConstraint("token", name="pk_oauth1_tokens"),
    )
    op.create_index("ix_oauth1_tokens_consumer_key", "oauth1_tokens", ["consumer_key"])
    op.create_index("ix_oauth1_tokens_user_id", "oauth1_tokens", ["user_id"])
    op.create_table(
        "oauth1_nonces",
        sa.Column("consumer_key", sa.Text(), nullable=False),
        sa.Column("token", sa.Text(), nullable=False),
        sa.Column("timestamp", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("nonce", sa.Text(), nullable=False),
        _at("expires_at"),
        sa.PrimaryKeyConstraint(
            "consumer_key", "token", "timestamp", "nonce", name="pk_oauth1_nonces"
        ),
    )
    op.create_index("ix_oauth1_nonces_expires_at", "oauth1_nonces", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_oauth1_nonces_expires_at", "oauth1_nonces")
    op.drop_table("oauth1_nonces")
    op.drop_index("ix_oauth1_tokens_user_id", "oauth1_tokens")
    op.drop_index("ix_oauth1_tokens_consumer_key", "oauth1_tokens")
    op.drop_table("oauth1_tokens")
    op.drop_table("oauth1_consumers")
