"""staff side: the knowledge-base question as typed (handed to staff), the complaint flow's
latest step-button message (its buttons taken away once the step is over)

Revision ID: 0013
Revises: 0012

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("kb_questions") as batch_op:
        batch_op.add_column(sa.Column("typed", sa.String(length=500), nullable=True))
    with op.batch_alter_table("complaint_drafts") as batch_op:
        batch_op.add_column(sa.Column("prompt_message_id", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("complaint_drafts") as batch_op:
        batch_op.drop_column("prompt_message_id")
    with op.batch_alter_table("kb_questions") as batch_op:
        batch_op.drop_column("typed")
